#include "apps/training_loop.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "apps/device.h"
#include "apps/progress.h"
#include "engine/checkpoint.h"
#include "engine/error.h"
#include "kernels/accuracy.h"
#include "report/plot.h"
#include "report/png_writer.h"

namespace tl::app {

namespace {

std::atomic<bool> g_interrupted{false};

extern "C" void on_interrupt(int) {
  if (g_interrupted.exchange(true)) {  // the second Ctrl-C: stop now (outputs are only ever renamed into place)
    ::signal(SIGINT, SIG_DFL);
    ::raise(SIGINT);
    return;
  }
  static const char kMessage[] = "\ninterrupted: finishing the current batch, then saving (Ctrl-C again to abort)\n";
  ssize_t ignored = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  (void)ignored;
}

void count_predictions(const std::vector<int64_t>& predicted, const Tensor& labels, EvalResult& r) {
  const int64_t* y = labels.data<int64_t>();
  for (size_t i = 0; i < predicted.size(); ++i) {
    r.correct += predicted[i] == y[i];
    size_t t = static_cast<size_t>(y[i]), p = static_cast<size_t>(predicted[i]);
    if (t < r.confusion.size() && p < r.confusion.size()) ++r.confusion[t][p];
  }
  r.count += static_cast<int64_t>(predicted.size());
}

EvalResult empty_eval(int64_t num_classes) {
  EvalResult r;
  r.confusion.assign(static_cast<size_t>(num_classes), std::vector<int64_t>(static_cast<size_t>(num_classes), 0));
  return r;
}

void finish_eval(EvalResult& r, double loss_sum) {
  r.loss = r.count ? loss_sum / r.count : 0;
  r.accuracy = r.count ? double(r.correct) / r.count : 0;
}

// Each row's predicted class: the logits' argmax (on the logits' device; only the indices come back), or logit > 0
// for a binary head ([N,1], read on the host: one float per row).
std::vector<int64_t> predicted_classes(Context& ctx, const Tensor& logits, bool binary) {
  const int64_t n = logits.size(0);
  std::vector<int64_t> out(static_cast<size_t>(n));
  if (binary) {
    Tensor host = logits.to(ctx, Device::CPU);
    for (int64_t i = 0; i < n; ++i) out[i] = host.data<float>()[i] > 0 ? 1 : 0;
    return out;
  }
  Tensor indices;
  argmax_rows(ctx, logits, indices);
  Tensor host = indices.to(ctx, Device::CPU);
  std::copy(host.data<int64_t>(), host.data<int64_t>() + n, out.begin());
  return out;
}

// A host snapshot of a live tensor, wherever it lives (to() would share a CPU tensor's storage).
Tensor host_copy(Context& ctx, const Tensor& live) {
  return live.is_cuda() ? live.to(ctx, Device::CPU) : live.clone();
}

// Rows `order[begin, end)` of a feature set as one batch.
void gather_rows(const FeatureSet& data, const std::vector<int64_t>& order, int64_t begin, int64_t end, Tensor& x,
                 Tensor& y) {
  int64_t d = data.features.size(1);
  x = Tensor::empty({end - begin, d});
  y = Tensor::empty({end - begin}, DType::I64);
  const float* src = data.features.data<float>();
  for (int64_t i = begin; i < end; ++i) {
    std::copy(src + order[i] * d, src + (order[i] + 1) * d, x.data<float>() + (i - begin) * d);
    y.data<int64_t>()[i - begin] = data.labels.data<int64_t>()[order[i]];
  }
}

}  // namespace

void install_interrupt_handler() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &action, nullptr);
}

bool interrupt_requested() { return g_interrupted.load(); }

LossResult batch_loss(Context& ctx, const Tensor& logits, const Tensor& labels, const LossSpec& spec,
                      std::vector<int64_t>* predicted, int64_t* correct) {
  TL_CHECK(!labels.is_cuda() && labels.dtype() == DType::I64, "batch_loss: labels must be host I64, got ",
           labels.describe());
  int64_t n = labels.numel();
  TL_CHECK(logits.dim() >= 1 && logits.size(0) == n, "batch_loss: logits ", logits.describe(), " for ", n, " labels");
  LossResult result;
  const int64_t* y = labels.data<int64_t>();
  if (spec.binary) {
    TL_CHECK(logits.numel() == n, "binary head: expected one logit per image, got ", logits.describe());
    Tensor targets = Tensor::empty({n});
    for (int64_t i = 0; i < n; ++i) targets.data<float>()[i] = static_cast<float>(y[i]);
    result = bce_with_logits_loss(ctx, logits.reshape({n}), to_job_device(ctx, targets));
    result.dlogits = result.dlogits.reshape(logits.shape());
    if (predicted || correct) {
      std::vector<int64_t> classes = predicted_classes(ctx, logits, true);
      if (correct) *correct = 0;
      for (int64_t i = 0; correct && i < n; ++i) *correct += classes[i] == y[i];
      if (predicted) *predicted = std::move(classes);
    }
    return result;
  }
  Tensor device_labels = to_job_device(ctx, labels);
  result = cross_entropy_loss(ctx, logits, device_labels, spec.label_smoothing);
  if (predicted) *predicted = predicted_classes(ctx, logits, false);
  if (correct) *correct = count_correct(ctx, logits, device_labels);
  return result;
}

namespace {

// One training epoch's running sums, progress bar and Ctrl-C check, shared by the image and feature loops.
class EpochTally {
 public:
  EpochTally(const std::string& label, int64_t batches) : bar_(label, batches) {}
  // Counts one batch (mean loss, correct predictions, size); false when Ctrl-C asks to stop.
  bool add(double mean_loss, int64_t correct, int64_t count) {
    loss_sum_ += mean_loss * count;
    correct_ += correct;
    result_.count += count;
    bar_.step(count);
    result_.interrupted = interrupt_requested();
    return !result_.interrupted;
  }
  EpochResult finish() {
    result_.images_per_second = bar_.finish();
    result_.seconds = bar_.seconds();
    result_.loss = result_.count ? loss_sum_ / result_.count : 0;
    result_.accuracy = result_.count ? double(correct_) / result_.count : 0;
    return result_;
  }

 private:
  ProgressBar bar_;
  EpochResult result_;
  double loss_sum_ = 0;
  int64_t correct_ = 0;
};

}  // namespace

EpochResult train_epoch(Context& ctx, Model& model, BatchLoader& loader, int64_t epoch, Optimizer& optimizer,
                        const LossSpec& spec, const std::string& label) {
  loader.start_epoch(epoch);
  EpochTally tally(label, loader.batches_per_epoch());
  Batch batch;
  while (loader.next(batch)) {
    optimizer.zero_grad(ctx);
    Tensor logits = model.forward(ctx, to_job_device(ctx, batch.images), Mode::Train);
    int64_t correct = 0;
    LossResult loss = batch_loss(ctx, logits, batch.labels, spec, nullptr, &correct);
    model.backward(ctx, loss.dlogits);
    optimizer.step(ctx);
    if (!tally.add(loss.loss, correct, batch.labels.numel())) break;
  }
  return tally.finish();
}

EvalResult evaluate(Context& ctx, Model& model, BatchLoader& loader, int64_t num_classes, const LossSpec& spec,
                    const std::string& label) {
  EvalResult r = empty_eval(num_classes);
  double loss_sum = 0;
  loader.start_epoch(0);
  ProgressBar bar(label, loader.batches_per_epoch());
  Batch batch;
  std::vector<int64_t> predicted;
  while (loader.next(batch)) {
    Tensor logits = model.forward(ctx, to_job_device(ctx, batch.images), Mode::Eval);
    loss_sum += batch_loss(ctx, logits, batch.labels, spec, &predicted).loss * batch.labels.numel();
    count_predictions(predicted, batch.labels, r);
    bar.step(batch.labels.numel());
    if (interrupt_requested()) {
      r.interrupted = true;
      break;
    }
  }
  bar.finish();
  finish_eval(r, loss_sum);
  return r;
}

EpochResult train_epoch_features(Context& ctx, Layer& head, const FeatureSet& data, int64_t batch_size, uint64_t seed,
                                 int64_t epoch, Optimizer& optimizer, const LossSpec& spec, const std::string& label) {
  int64_t n = data.size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(hash_u64(seed, static_cast<uint64_t>(epoch)));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  EpochTally tally(label, (n + batch_size - 1) / batch_size);
  head.plan_backward(false);  // the features carry no gradient: the head's input needs none
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    Tensor x, y;
    gather_rows(data, order, begin, std::min(n, begin + batch_size), x, y);
    optimizer.zero_grad(ctx);
    Tensor logits = head.forward(ctx, to_job_device(ctx, x), Mode::Train);
    int64_t correct = 0;
    LossResult loss = batch_loss(ctx, logits, y, spec, nullptr, &correct);
    head.backward(ctx, loss.dlogits, false);
    optimizer.step(ctx);
    if (!tally.add(loss.loss, correct, y.numel())) break;
  }
  return tally.finish();
}

EvalResult evaluate_features(Context& ctx, Layer& head, const FeatureSet& data, int64_t num_classes,
                             const LossSpec& spec, int64_t batch_size) {
  EvalResult r = empty_eval(num_classes);
  int64_t n = data.size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  double loss_sum = 0;
  std::vector<int64_t> predicted;
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    Tensor x, y;
    gather_rows(data, order, begin, std::min(n, begin + batch_size), x, y);
    Tensor logits = head.forward(ctx, to_job_device(ctx, x), Mode::Eval);
    loss_sum += batch_loss(ctx, logits, y, spec, &predicted).loss * y.numel();
    count_predictions(predicted, y, r);
  }
  finish_eval(r, loss_sum);
  return r;
}

void write_history_csv(const std::string& path, const std::vector<HistoryRow>& rows) {
  std::string text = "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n";
  for (const HistoryRow& r : rows) {
    char line[256];
    std::snprintf(line, sizeof line, "%lld,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f\n", static_cast<long long>(r.epoch),
                  r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.lr, r.seconds);
    text += line;
  }
  report::write_file_atomically(path, text.data(), text.size());
}

void write_history_png(const std::string& path, const std::vector<HistoryRow>& rows) {
  constexpr uint32_t kTrain = 0x1f77b4, kVal = 0xff7f0e;
  report::Chart accuracy{"Accuracy", "epoch", "accuracy", {}}, loss{"Loss", "epoch", "loss", {}};
  report::Series train_acc{"train", {}, kTrain}, val_acc{"val", {}, kVal};
  report::Series train_loss{"train", {}, kTrain}, val_loss{"val", {}, kVal};
  for (const HistoryRow& r : rows) {
    train_acc.y.push_back(r.train_acc);
    val_acc.y.push_back(r.val_acc);
    train_loss.y.push_back(r.train_loss);
    val_loss.y.push_back(r.val_loss);
  }
  accuracy.series = {train_acc, val_acc};
  loss.series = {train_loss, val_loss};
  report::plot_charts_png(path, {accuracy, loss});
}

TrainingRun::TrainingRun(Context& ctx, Model& model, std::string output_dir, bool save_each_best)
    : ctx_(ctx), model_(model), dir_(std::move(output_dir)), save_each_best_(save_each_best) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  TL_CHECK(std::filesystem::is_directory(dir_, ec), "--output ", dir_, ": cannot create the folder");
  for (auto& b : model_.named_buffers()) tracked_.emplace_back(&b.buffer->value, Tensor());
}

std::string TrainingRun::path(const std::string& file) const { return (std::filesystem::path(dir_) / file).string(); }

void TrainingRun::track_trainable() {
  for (auto& p : model_.named_parameters()) {
    if (!p.parameter->trainable()) continue;
    Tensor* live = &p.parameter->value;
    bool known = std::any_of(tracked_.begin(), tracked_.end(), [&](auto& t) { return t.first == live; });
    // Frozen until now, so its value is still the one it had at the best epoch.
    if (!known) tracked_.emplace_back(live, has_best() ? host_copy(ctx_, *live) : Tensor());
  }
}

void TrainingRun::end_epoch(const HistoryRow& row, int64_t total_epochs, double images_per_second) {
  history_.push_back(row);
  bool best = row.val_acc > best_accuracy_;
  std::printf("epoch %lld/%lld  train loss %.4f acc %.4f  val loss %.4f acc %.4f  %.1f s  (%.0f img/s)%s\n",
              static_cast<long long>(row.epoch), static_cast<long long>(total_epochs), row.train_loss, row.train_acc,
              row.val_loss, row.val_acc, row.seconds, images_per_second, best ? "  *" : "");
  std::fflush(stdout);
  if (best) {
    best_accuracy_ = row.val_acc;
    best_epoch_ = row.epoch;
    for (auto& [live, copy] : tracked_) copy = host_copy(ctx_, *live);
    saved_best_ = false;
    if (save_each_best_) {
      save({});
      saved_best_ = true;
    }
  }
  // Cheap epochs (a head on cached features) come many per second: rewriting (and fsyncing) the history after
  // each would cost more than the epochs; finish() writes the last state.
  auto now = std::chrono::steady_clock::now();
  if (row.epoch == total_epochs || now - last_history_write_ >= std::chrono::seconds(2)) write_history();
}

void TrainingRun::write_history() {
  if (history_.empty()) return;
  write_history_csv(path("history.csv"), history_);
  write_history_png(path("history.png"), history_);
  last_history_write_ = std::chrono::steady_clock::now();
}

void TrainingRun::save(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> meta = extra;
  if (has_best()) {
    meta["transfer.best_epoch"] = std::to_string(best_epoch_);
    char acc[32];
    std::snprintf(acc, sizeof acc, "%.6f", best_accuracy_);
    meta["transfer.val_accuracy"] = acc;
  }
  save_checkpoint(ctx_, path("model.safetensors"), model_, meta);
}

std::string TrainingRun::finish(bool interrupted) {
  write_history();
  if (has_best()) {
    for (auto& [live, copy] : tracked_)
      if (copy.defined()) live->copy_from(ctx_, copy);
    if (!saved_best_) save({});
    saved_best_ = true;
  } else {
    save({{"transfer.note", interrupted ? "interrupted before the first epoch ended: not validated"
                                        : "no epoch ran: not validated"}});
  }
  return path("model.safetensors");
}

}  // namespace tl::app
