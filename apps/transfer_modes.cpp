// The tl transfer job: data, model, the mode's training, and the outputs (apps/transfer.cpp parses the options).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "apps/device.h"
#include "apps/progress.h"
#include "apps/training_loop.h"
#include "apps/transfer_options.h"
#include "engine/error.h"
#include "engine/schedule.h"
#include "layers/linear.h"
#include "loaders/feature_cache.h"
#include "report/confusion.h"

namespace tl::app {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Interrupted {};  // thrown out of feature extraction on Ctrl-C: nothing of it is kept

struct Job {
  explicit Job(const TransferOptions& options)
      : o(options), ctx(job_context_options(options.device, options.seed, options.threads)) {}
  const TransferOptions& o;
  Context ctx;
  DatasetSplits data;
  Model model;
  TransferModel tm;
  LossSpec loss;
  BadFilePolicy policy = BadFilePolicy::Skip;
  EvalResult best_val;  // the evaluation of the best epoch (its confusion matrix is written at the end)
  std::unique_ptr<BatchLoader> test_loader;  // image modes: the test split, evaluated once with the best weights

  int64_t num_classes() const { return static_cast<int64_t>(data.classes.size()); }
  BatchLoader::Transform eval_transform_fn() const {
    Preprocessing p = tm.preprocessing;
    int size = o.model.image_size;
    ResizeMode mode = o.model.resize;
    return [p, size, mode](const Image& image, Rng&) { return eval_transform(image, p, size, mode); };
  }
  BatchLoader::Transform train_transform_fn() const {
    Preprocessing p = tm.preprocessing;
    Augmentation a = o.augmentation;
    int size = o.model.image_size;
    ResizeMode mode = o.model.resize;
    return [p, a, size, mode](const Image& image, Rng& rng) { return train_transform(image, a, p, size, mode, rng); };
  }
};

double schedule_factor(const std::string& schedule, int64_t epoch, int64_t epochs) {
  if (schedule == "none") return 1;
  if (schedule == "cosine") return CosineSchedule{epochs}.factor(epoch);
  long long size = 0;
  double gamma = 0;
  char tail = 0;
  if (std::sscanf(schedule.c_str(), "step:%lld:%lf%c", &size, &gamma, &tail) == 2 && size > 0 && gamma > 0)
    return StepSchedule{size, gamma}.factor(epoch);
  throw Error(str("--schedule must be none, cosine or step:SIZE:GAMMA (e.g. step:7:0.1), got '", schedule, "'"));
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& o, Model& model, double lr) {
  std::unique_ptr<Optimizer> opt;
  if (o.name == "sgd")
    opt = make_sgd({.momentum = o.momentum, .weight_decay = o.weight_decay, .decay = o.decay, .nesterov = o.nesterov});
  else if (o.name == "rmsprop")
    opt = make_rmsprop({.weight_decay = o.weight_decay});
  else
    opt = make_adam({.weight_decay = o.weight_decay, .decoupled = o.name == "adamw"});
  std::vector<NamedParameter> trainable;
  for (auto& p : model.named_parameters())
    if (p.parameter->trainable()) trainable.push_back(p);
  opt->add_group(trainable, lr);
  return opt;
}

std::string accuracy_text(const EvalResult& r) {
  char text[64];
  std::snprintf(text, sizeof text, "%.4f (%lld/%lld)", r.accuracy, static_cast<long long>(r.correct),
                static_cast<long long>(r.count));
  return text;
}

// ---- extract: features once per image, through the feature cache.

int64_t head_input_width(Layer& head) {
  if (auto* linear = dynamic_cast<Linear*>(&head)) return linear->weight.value.size(1);
  for (auto& [name, child] : head.children())
    if (auto* linear = dynamic_cast<Linear*>(child)) return linear->weight.value.size(1);
  throw Error("the head starts with no Linear layer");
}

FeatureSet extract_split(Job& job, FeatureCache& cache, const BaseAndHead& bh, const Dataset& d, const std::string& split,
                         Tensor* all_rows) {
  const int64_t n = static_cast<int64_t>(d.examples.size()), width = head_input_width(*bh.head);
  int64_t recomputed = 0, decoded = 0;
  std::unique_ptr<ProgressBar> bar;
  auto compute = [&](const std::vector<int64_t>& indices) -> Tensor {
    if (!bar) {  // batches if every row is computed: the cache hands out chunks of kFeatureCacheChunk rows
      int64_t b = job.o.batch_size, per_chunk = (kFeatureCacheChunk + b - 1) / b, rest = n % kFeatureCacheChunk;
      bar = std::make_unique<ProgressBar>(str("features ", split), n / kFeatureCacheChunk * per_chunk + (rest + b - 1) / b);
    }
    Dataset sub;
    sub.classes = d.classes;
    for (int64_t i : indices) sub.examples.push_back(d.examples[static_cast<size_t>(i)]);
    BatchLoader loader(sub, job.o.batch_size, false, job.o.seed, job.o.workers, job.eval_transform_fn(), job.policy);
    loader.start_epoch(0);
    // Unreadable images keep NaN rows: cached as such (until the file changes) and left out of training.
    Tensor out = Tensor::full({static_cast<int64_t>(indices.size()), width}, std::numeric_limits<double>::quiet_NaN());
    Batch batch;
    while (loader.next(batch)) {
      // Eval: the frozen base keeps no activation; only the features come back to the host, for the cache.
      Tensor f = run_layers(job.ctx, bh.base, to_job_device(job.ctx, batch.images), Mode::Eval);
      f = f.reshape({f.size(0), -1}).to(job.ctx, Device::CPU);
      TL_CHECK(f.size(1) == width, "the base gives ", f.size(1), " features per image, the head takes ", width);
      for (size_t r = 0; r < batch.indices.size(); ++r)
        std::copy(f.data<float>() + r * width, f.data<float>() + (r + 1) * width,
                  out.data<float>() + batch.indices[r] * width);
      bar->step(static_cast<int64_t>(batch.indices.size()));
      if (interrupt_requested()) throw Interrupted{};
    }
    decoded += loader.decoded_count();
    return out;
  };
  Tensor features = cache.get(d, split, compute, &recomputed);
  if (bar) bar->finish();
  if (all_rows) *all_rows = features;

  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = features.data<float>() + i * width;
    bool finite = true;
    for (int64_t j = 0; j < width && finite; ++j) finite = std::isfinite(row[j]);
    if (finite) keep.push_back(i);
  }
  std::printf("features %-5s %lld images: %lld computed (%lld decoded), %lld from the cache%s\n", split.c_str(),
              static_cast<long long>(n), static_cast<long long>(recomputed), static_cast<long long>(decoded),
              static_cast<long long>(n - recomputed),
              keep.size() < static_cast<size_t>(n) ? str("; ", n - static_cast<int64_t>(keep.size()), " unreadable, left out").c_str() : "");
  std::fflush(stdout);
  FeatureSet fs;
  fs.features = Tensor::empty({static_cast<int64_t>(keep.size()), width});
  fs.labels = Tensor::empty({static_cast<int64_t>(keep.size())}, DType::I64);
  for (size_t r = 0; r < keep.size(); ++r) {
    std::copy(features.data<float>() + keep[r] * width, features.data<float>() + (keep[r] + 1) * width,
              fs.features.data<float>() + static_cast<int64_t>(r) * width);
    fs.labels.data<int64_t>()[r] = d.examples[static_cast<size_t>(keep[r])].label;
  }
  return fs;
}

bool run_extract(Job& job, TrainingRun& run, EvalResult* test) {
  const TransferOptions& o = job.o;
  train_head_only(job.model, job.tm);
  run.track_trainable();
  std::printf("trainable %s\n", trainable_summary(job.model).c_str());
  BaseAndHead bh = split_base_and_head(job.model, job.tm.head);
  std::string description = str("tl-extract-v1 ", job.model.architecture, " base before '", job.tm.head, "' include_top=",
                                job.model.metadata["include_top"], " size=", o.model.image_size, " resize=",
                                o.model.resize == ResizeMode::Exact ? "exact" : "shorter");
  for (auto& [k, v] : preprocessing_metadata(job.tm.preprocessing)) description += str(" ", k, "=", v);
  FeatureCache cache(o.cache_dir, hash_base(job.ctx, job.model, job.tm.head), description);
  Tensor train_rows;
  FeatureSet train = extract_split(job, cache, bh, job.data.train, "train", &train_rows);
  FeatureSet val = extract_split(job, cache, bh, job.data.val, "val", nullptr);
  FeatureSet test_set;
  if (!job.data.test.examples.empty()) test_set = extract_split(job, cache, bh, job.data.test, "test", nullptr);
  if (!o.export_path.empty()) {
    const std::string& e = o.export_path;
    if (e.compare(e.size() - 4, 4, ".npy") == 0) export_features_npy(e, train_rows);
    else export_features_csv(e, train_rows, job.data.train);
    std::printf("exported the train features [%lld x %lld] to %s\n", static_cast<long long>(train_rows.size(0)),
                static_cast<long long>(train_rows.size(1)), e.c_str());
  }
  TL_CHECK(train.size() > 0 && val.size() > 0, "no readable train or val images left");

  auto optimizer = make_optimizer(o.optimizer, job.model, o.optimizer.lr);
  // A small head on a few hundred rows: one thread beats waking the others for every tiny product.
  int threads = job.ctx.threads();
  if (job.model.count_parameters(true) < (1 << 20)) job.ctx.set_threads(1);
  struct RestoreThreads {
    Context& ctx;
    int threads;
    ~RestoreThreads() { ctx.set_threads(threads); }
  } restore{job.ctx, threads};
  for (int64_t epoch = 1; epoch <= o.epochs; ++epoch) {
    if (interrupt_requested()) return false;
    Clock::time_point start = Clock::now();
    optimizer->set_lr_factor(schedule_factor(o.optimizer.schedule, epoch - 1, o.epochs));
    double lr = optimizer->lr();
    EpochResult tr = train_epoch_features(job.ctx, *bh.head, train, o.batch_size, o.seed, epoch, *optimizer, job.loss,
                                          str("epoch ", epoch, "/", o.epochs));
    if (tr.interrupted) return false;
    EvalResult va = evaluate_features(job.ctx, *bh.head, val, job.num_classes(), job.loss, 256);
    run.end_epoch({epoch, tr.loss, tr.accuracy, va.loss, va.accuracy, lr, seconds_since(start)}, o.epochs,
                  tr.images_per_second);
    if (run.best_epoch() == epoch) {
      job.best_val = va;
      if (test_set.size() > 0) *test = evaluate_features(job.ctx, *bh.head, test_set, job.num_classes(), job.loss, 256);
    }
  }
  return true;
}

// ---- finetune / two-stage / full: images through the model.

struct ImageLoaders {
  std::unique_ptr<BatchLoader> train, val;
};

bool run_image_epochs(Job& job, TrainingRun& run, ImageLoaders& loaders, int64_t first_epoch, int64_t epochs,
                      int64_t total_epochs, double lr) {
  const TransferOptions& o = job.o;
  auto optimizer = make_optimizer(o.optimizer, job.model, lr);
  for (int64_t e = 0; e < epochs; ++e) {
    if (interrupt_requested()) return false;
    int64_t epoch = first_epoch + e;
    Clock::time_point start = Clock::now();
    optimizer->set_lr_factor(schedule_factor(o.optimizer.schedule, e, epochs));
    double epoch_lr = optimizer->lr();
    EpochResult tr = train_epoch(job.ctx, job.model, *loaders.train, epoch, *optimizer, job.loss,
                                 str("epoch ", epoch, "/", total_epochs));
    if (tr.interrupted) return false;
    EvalResult va = evaluate(job.ctx, job.model, *loaders.val, job.num_classes(), job.loss, "val");
    if (va.interrupted) return false;
    run.end_epoch({epoch, tr.loss, tr.accuracy, va.loss, va.accuracy, epoch_lr, seconds_since(start)}, total_epochs,
                  tr.images_per_second);
    if (run.best_epoch() == epoch) job.best_val = va;
  }
  return true;
}

bool run_images(Job& job, TrainingRun& run) {
  const TransferOptions& o = job.o;
  ImageLoaders loaders;
  loaders.train = std::make_unique<BatchLoader>(job.data.train, o.batch_size, true, o.seed, o.workers,
                                                job.train_transform_fn(), job.policy);
  loaders.val = std::make_unique<BatchLoader>(job.data.val, o.batch_size, false, o.seed, o.workers,
                                              job.eval_transform_fn(), job.policy);
  if (!job.data.test.examples.empty())
    job.test_loader = std::make_unique<BatchLoader>(job.data.test, o.batch_size, false, o.seed, o.workers,
                                                 job.eval_transform_fn(), job.policy);
  if (o.mode == TransferMode::Finetune)
    select_trainable(job.model, job.tm, o.train_globs, o.unfreeze_from, o.train_last);
  if (o.mode != TransferMode::TwoStage) {
    std::printf("trainable %s\n", trainable_summary(job.model).c_str());
    run.track_trainable();
    return run_image_epochs(job, run, loaders, 1, o.epochs, o.epochs, o.optimizer.lr);
  }
  int64_t total = o.stage1_epochs + o.stage2_epochs;
  train_head_only(job.model, job.tm);
  std::printf("stage 1: %lld epochs at lr %g; trainable %s\n", static_cast<long long>(o.stage1_epochs),
              o.optimizer.lr, trainable_summary(job.model).c_str());
  run.track_trainable();
  if (!run_image_epochs(job, run, loaders, 1, o.stage1_epochs, total, o.optimizer.lr)) return false;
  select_trainable(job.model, job.tm, "", o.unfreeze_from, 0);
  run.track_trainable();
  std::printf("stage 2: %lld epochs at lr %g; trainable %s\n", static_cast<long long>(o.stage2_epochs), o.stage2_lr,
              trainable_summary(job.model).c_str());
  return run_image_epochs(job, run, loaders, o.stage1_epochs + 1, o.stage2_epochs, total, o.stage2_lr);
}

void print_header(Job& job, const std::string& format) {
  const TransferOptions& o = job.o;
  std::string classes;
  for (size_t i = 0; i < job.data.classes.size() && i < 10; ++i) classes += (i ? ", " : "") + job.data.classes[i];
  if (job.data.classes.size() > 10) classes += ", ...";
  std::printf("tl transfer %s\n", mode_name(o.mode));
  std::printf("data     %s (%s): %zu train, %zu val, %zu test images; %zu classes: %s\n", o.data.dir.c_str(),
              format.c_str(), job.data.train.examples.size(), job.data.val.examples.size(),
              job.data.test.examples.size(), job.data.classes.size(), classes.c_str());
  std::printf("weights  %s\n", job.tm.weights_summary.c_str());
  std::printf("model    %s, head '%s' (%s), image %d (%s), %s loss\n", job.model.architecture.c_str(), job.tm.head.c_str(),
              job.model.metadata["head.spec"].empty() ? "one Linear" : job.model.metadata["head.spec"].c_str(),
              o.model.image_size, o.model.resize == ResizeMode::Exact ? "exact resize" : "shorter side + center crop",
              o.model.binary ? "sigmoid + binary cross-entropy" : "softmax cross-entropy");
  std::printf("training %s lr %g, batch %lld, augmentation %s; %s, %d decoding workers\n", o.optimizer.name.c_str(),
              o.optimizer.lr, static_cast<long long>(o.batch_size), o.augment_style.c_str(),
              device_summary(job.ctx).c_str(), o.workers);
  std::fflush(stdout);
}

}  // namespace

int run_transfer_job(const TransferOptions& given) {
  Clock::time_point start = Clock::now();
  TransferOptions o = given;
  if (o.augmentation_ignored)
    std::printf("note: augmentation is ignored in extract mode (the base runs once per image; features are cached)\n");
  Job job(o);
  job.policy = o.strict ? BadFilePolicy::Fatal : BadFilePolicy::Skip;
  std::string format;
  job.data = load_transfer_data(o.data, &format);
  if (o.resize_auto) o.model.resize = format == "folder" ? ResizeMode::ShorterThenCrop : ResizeMode::Exact;
  job.tm = build_transfer_model(job.model, o.model, job.data.classes, job.ctx.rng());
  move_model(job.ctx, job.model);  // built and loaded on the host; computes on the job's device from here on
  job.model.metadata["transfer.mode"] = mode_name(o.mode);
  job.loss = {o.model.binary, o.label_smoothing};
  print_header(job, format);

  install_interrupt_handler();
  TrainingRun run(job.ctx, job.model, o.output, o.mode != TransferMode::Extract);
  EvalResult test;
  bool completed;
  try {
    completed = o.mode == TransferMode::Extract ? run_extract(job, run, &test) : run_images(job, run);
  } catch (const Interrupted&) {
    std::printf("interrupted during feature extraction: nothing trained, nothing saved (cached features are kept "
                "only for finished splits)\n");
    return 130;
  }
  std::string model_path = run.finish(!completed);  // the best weights are back in the model
  if (completed && run.has_best() && job.test_loader)
    test = evaluate(job.ctx, job.model, *job.test_loader, job.num_classes(), job.loss, "test");
  std::vector<std::string> written = {model_path, run.path("history.csv"), run.path("history.png")};
  if (run.has_best()) {
    report::write_confusion_csv(run.path("confusion_val.csv"), job.data.classes, job.best_val.confusion);
    report::write_confusion_png(run.path("confusion_val.png"), job.data.classes, job.best_val.confusion);
    written.push_back(run.path("confusion_val.csv"));
    written.push_back(run.path("confusion_val.png"));
    if (test.count > 0) {
      report::write_confusion_csv(run.path("confusion_test.csv"), job.data.classes, test.confusion);
      report::write_confusion_png(run.path("confusion_test.png"), job.data.classes, test.confusion);
      written.push_back(run.path("confusion_test.csv"));
      written.push_back(run.path("confusion_test.png"));
    }
    std::printf("best val accuracy %s at epoch %lld\n", accuracy_text(job.best_val).c_str(),
                static_cast<long long>(run.best_epoch()));
    if (test.count > 0) std::printf("test accuracy %s (the best epoch's model)\n", accuracy_text(test).c_str());
    else std::printf("test accuracy: no test split\n");
  }
  double seconds = seconds_since(start);
  std::printf("total time %.1f s\n", seconds);
  for (const std::string& p : written)
    if (!run.history().empty() || p == model_path) std::printf("wrote %s\n", p.c_str());
  std::printf("RESULT val_accuracy=%.6f val_correct=%lld val_count=%lld test_accuracy=%.6f seconds=%.1f\n",
              run.has_best() ? job.best_val.accuracy : 0.0, static_cast<long long>(job.best_val.correct),
              static_cast<long long>(job.best_val.count), test.count ? test.accuracy : -1.0, seconds);
  if (!completed) {
    std::printf("interrupted: saved %s\n", run.has_best() ? "the best model so far, the history and the plots"
                                                          : "the model as it was (no epoch finished)");
    return 130;
  }
  return 0;
}

}  // namespace tl::app
