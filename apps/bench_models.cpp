// tl bench --models (GPU) and --cpu: images per second of whole steps of ResNet18 and VGG16 in four modes, with the
// peak device memory of each and the fraction of the measured matrix rate the step achieves.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "apps/bench.h"
#include "apps/bench_timing.h"
#include "engine/cuda_state.h"
#include "engine/error.h"
#include "engine/loss.h"
#include "engine/optimizer.h"
#include "layers/models/flops.h"
#include "layers/models/resnet18.h"
#include "layers/models/vgg16.h"

namespace tl::app::bench {

void build_model(Model& model, const std::string& name, int64_t num_classes) {
  if (name == "resnet18")
    build_resnet18(model, num_classes);
  else if (name == "vgg16")
    build_vgg16(model, num_classes);
  else
    throw Error(str("tl bench: unknown model '", name, "' (resnet18 or vgg16)"));
}

bool is_training_mode(const std::string& mode) { return mode != "inference"; }

void set_mode(Model& model, const std::string& model_name, const std::string& mode) {
  bool resnet = model_name == "resnet18";
  if (mode == "inference") {
    model.set_trainable("*", false);  // frees every gradient: inference memory holds none
  } else if (mode == "train") {
    model.set_trainable("*", true);
  } else if (mode == "finetune") {
    if (resnet) {
      model.set_trainable("*", false);
      model.set_trainable("layer4.*", true);
      model.set_trainable("fc.*", true);
    } else {
      model.freeze_until("features.24");
    }
  } else if (mode == "head") {
    model.set_trainable("*", false);
    model.set_trainable(resnet ? "fc.*" : "classifier.6.*", true);
  } else {
    throw Error(str("tl bench: unknown mode '", mode, "' (inference, train, finetune or head)"));
  }
}

std::string mode_label(const std::string& model_name, const std::string& mode) {
  if (mode == "inference") return "inference";
  if (mode == "train") return "train (all layers)";
  if (mode == "finetune") return model_name == "resnet18" ? "finetune layer4+fc" : "finetune features.24+classifier";
  if (mode == "head") return model_name == "resnet18" ? "head only (fc)" : "head only (classifier.6)";
  return mode;
}

Tensor random_images(Context& ctx, int64_t batch, int64_t size, uint64_t seed) {
  Tensor x = Tensor::empty({batch, 3, size, size});
  Rng rng(seed);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = static_cast<float>(2 * rng.uniform() - 1);
  return x.to(ctx, ctx.device());
}

Tensor random_labels(Context& ctx, int64_t batch, int64_t classes, uint64_t seed) {
  Tensor y = Tensor::empty({batch}, DType::I64);
  Rng rng(seed ^ 0x5bd1e995u);
  int64_t* p = y.data<int64_t>();
  for (int64_t i = 0; i < batch; ++i) p[i] = static_cast<int64_t>(rng.below(static_cast<uint64_t>(classes)));
  return y.to(ctx, ctx.device());
}

namespace {

// SGD with momentum 0.9, the transfer-learning recipe; a small learning rate keeps random-label steps finite.
std::unique_ptr<Optimizer> make_optimizer(Model& model) {
  SgdOptions sgd;
  sgd.momentum = 0.9;
  auto optimizer = make_sgd(sgd);
  optimizer->add_group(model.named_parameters(), 1e-4);
  return optimizer;
}

struct Step {
  Context& ctx;
  Model& model;
  const Tensor& images;
  const Tensor& labels;
  Optimizer* optimizer;  // null: inference

  void operator()(int64_t) const {
    if (!optimizer) {
      model.forward(ctx, images, Mode::Eval);
      return;
    }
    optimizer->zero_grad(ctx);
    Tensor logits = model.forward(ctx, images, Mode::Train);
    LossResult loss = cross_entropy_loss(ctx, logits, labels);
    model.backward(ctx, loss.dlogits);
    optimizer->step(ctx);
  }
};

}  // namespace

void run_models(Context& ctx, const Options& o, Results& results) {
  const bool cuda = ctx.device() == Device::CUDA;
  const std::vector<int64_t> batches = cuda ? o.gpu_batches : std::vector<int64_t>{o.cpu_batch};
  const int64_t image = cuda ? o.gpu_image : o.cpu_image;
  const int warmup = cuda ? o.warmup : o.cpu_warmup, reps = cuda ? o.reps : o.cpu_reps;
  const std::string rate_precision = cuda && ctx.tf32() ? "tf32" : "fp32";
  const double rate = results.rate(cuda ? "cuda" : "cpu", rate_precision);
  for (const std::string& name : o.models) {
    Model model;
    build_model(model, name, o.num_classes);
    model.to(ctx, ctx.device());
    for (int64_t batch : batches) {
      Tensor images, labels;
      try {
        images = random_images(ctx, batch, image, o.seed + batch);
        labels = random_labels(ctx, batch, o.num_classes, o.seed + batch);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "tl bench: %s batch %lld: inputs: %s\n", name.c_str(), (long long)batch, e.what());
      }
      for (const std::string& mode : o.modes) {
        Row row;
        row.text("device", cuda ? "cuda" : "cpu").text("model", name).integer("batch", batch).integer("image", image);
        row.text("mode", mode).text("label", mode_label(name, mode)).text("config", "tl");
        row.text("precision", cuda ? (ctx.tf32() ? "fp32, TF32 convolutions" : "fp32, TF32 off") : "fp32");
        try {
          TL_CHECK(images.defined(), "no inputs (see the message above)");
          set_mode(model, name, mode);
          ModelFlops flops = count_model_flops(model, {3, image, image});
          const int64_t flops_per_image = is_training_mode(mode) ? flops.training() : flops.forward();
          std::unique_ptr<Optimizer> optimizer = is_training_mode(mode) ? make_optimizer(model) : nullptr;
          if (cuda) ctx.cuda().allocator->reset_peak();
          std::vector<double> times = time_calls(ctx, warmup, reps, Step{ctx, model, images, labels, optimizer.get()});
          const double ms = median(times);
          const double images_per_s = batch * 1000.0 / ms;
          const double tflops = flops_per_image * images_per_s / 1e12;
          row.number("ms", ms).number("ms_min", *std::min_element(times.begin(), times.end()));
          row.number("ms_max", *std::max_element(times.begin(), times.end())).number("images_per_s", images_per_s);
          row.integer("flops_per_image", flops_per_image).number("tflops", tflops);
          row.text("matrix_rate", rate_precision).number("fraction_of_matrix_rate", rate > 0 ? tflops / rate : NAN);
          if (cuda) {
            AllocatorStats stats = ctx.cuda().allocator->stats();
            // The plain cudaMalloc allocator keeps no statistics: say unknown rather than 0.
            if (stats.bytes_reserved > 0 || stats.peak_bytes_in_use > 0)
              row.integer("peak_bytes", static_cast<int64_t>(stats.peak_bytes_in_use));
            else
              row.null("peak_bytes");
          } else {
            row.null("peak_bytes");
          }
          row.integer("warmup", warmup).integer("reps", reps);
          std::fprintf(stderr, "tl bench: %s %s batch %lld: %.1f images/s (%.2f ms)\n", name.c_str(),
                       mode_label(name, mode).c_str(), (long long)batch, images_per_s, ms);
        } catch (const std::exception& e) {
          row.text("error", e.what());
          std::fprintf(stderr, "tl bench: %s %s batch %lld: error: %s\n", name.c_str(), mode.c_str(), (long long)batch,
                       e.what());
          if (cuda) {
            try {
              ctx.synchronize();
              ctx.cuda().allocator->empty_cache();
            } catch (const std::exception&) {
              // A device that cannot even synchronise has failed for good: the next rows will say so themselves.
            }
          }
        }
        results.models.push_back(row.done());
        results.saved();
      }
    }
  }
}

}  // namespace tl::app::bench
