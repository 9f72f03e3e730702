// tl bench --layers: where the time of one training step goes. The step is driven here, child by child of the
// model's root (conv1, bn1, relu, maxpool, layer1..layer4, avgpool, flatten, fc for ResNet18), exactly as
// Sequential does it (same backward plan, same need-dx rule), with each child's forward and backward timed on
// their own: CUDA events on the GPU (GPU time; host gaps between children are not in the parts), the steady clock
// on the CPU. The whole step is timed too, so the parts can be checked against it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <utility>

#include "apps/bench.h"
#include "apps/bench_timing.h"
#include "engine/error.h"
#include "engine/loss.h"
#include "engine/optimizer.h"
#include "layers/models/flops.h"

namespace tl::app::bench {

namespace {

struct Part {
  std::string name;
  std::vector<double> forward_ms, backward_ms;
  int64_t forward_flops = 0, training_flops = 0;
};

}  // namespace

void run_layers(Context& ctx, const Options& o, Results& results) {
  const bool cuda = ctx.device() == Device::CUDA;
  int64_t batch = o.layers_batch;
  if (batch <= 0) batch = cuda ? *std::max_element(o.gpu_batches.begin(), o.gpu_batches.end()) : o.cpu_batch;
  const int64_t image = cuda ? o.gpu_image : o.cpu_image;
  const int warmup = cuda ? o.warmup : o.cpu_warmup, reps = cuda ? o.reps : o.cpu_reps;
  const std::string& name = o.layers_model;

  Model model;
  build_model(model, name, o.num_classes);
  model.to(ctx, ctx.device());
  set_mode(model, name, "train");
  ModelFlops flops = count_model_flops(model, {3, image, image});
  Tensor images = random_images(ctx, batch, image, o.seed);
  Tensor labels = random_labels(ctx, batch, o.num_classes, o.seed);
  SgdOptions sgd;
  sgd.momentum = 0.9;
  auto optimizer = make_sgd(sgd);
  optimizer->add_group(model.named_parameters(), 1e-4);

  Sequential& root = model.root();
  std::vector<Part> parts(root.size());
  for (size_t i = 0; i < root.size(); ++i) {
    parts[i].name = root.name_at(i);
    parts[i].forward_flops = flops.forward_under(parts[i].name) * batch;
    parts[i].training_flops = flops.training_under(parts[i].name) * batch;
  }
  std::vector<double> zero_grad_ms, loss_ms, step_ms, whole_ms;

  IntervalTimer timer(ctx), whole(ctx);
  for (int rep = 0; rep < warmup + reps; ++rep) {
    const bool timed = rep >= warmup;
    timer.clear();
    whole.clear();
    whole.begin();
    timer.begin();
    optimizer->zero_grad(ctx);
    timer.end();
    model.assign_paths();
    root.plan_backward(false);  // as Model::forward does in Train mode
    Tensor h = images;
    std::vector<int> forward_index(root.size(), -1), backward_index(root.size(), -1);
    int interval = 1;  // 0: zero_grad
    for (size_t i = 0; i < root.size(); ++i) {
      timer.begin();
      h = root.at(i).forward(ctx, h, Mode::Train);
      timer.end();
      forward_index[i] = interval++;
    }
    timer.begin();
    LossResult loss = cross_entropy_loss(ctx, h, labels);
    timer.end();
    const int loss_index = interval++;
    // Sequential::backward_impl with need_dx = false at the root.
    Tensor g = loss.dlogits;
    for (size_t i = root.size(); i-- > 0;) {
      Layer& layer = root.at(i);
      if (!layer.output_requires_grad()) break;
      const bool need_dx = layer.input_requires_grad() && i > 0;
      timer.begin();
      g = layer.backward(ctx, g, need_dx);
      timer.end();
      backward_index[i] = interval++;
      if (!need_dx) break;
    }
    timer.begin();
    optimizer->step(ctx);
    timer.end();
    const int step_index = interval++;
    whole.end();
    std::vector<double> ms = timer.milliseconds();
    if (!timed) continue;
    whole_ms.push_back(whole.milliseconds().at(0));
    zero_grad_ms.push_back(ms[0]);
    loss_ms.push_back(ms[loss_index]);
    step_ms.push_back(ms[step_index]);
    for (size_t i = 0; i < root.size(); ++i) {
      parts[i].forward_ms.push_back(ms[forward_index[i]]);
      if (backward_index[i] >= 0) parts[i].backward_ms.push_back(ms[backward_index[i]]);
    }
  }

  auto base = [&](const std::string& part) {
    Row row;
    row.text("device", cuda ? "cuda" : "cpu").text("model", name).integer("batch", batch).integer("image", image);
    row.text("part", part);
    return row;
  };
  double parts_sum = 0;
  auto add = [&](const std::string& part, const std::vector<double>& fwd, const std::vector<double>& bwd,
                 int64_t fwd_flops, int64_t train_flops) {
    Row row = base(part);
    const double f = median(fwd), b = median(bwd);  // NaN (null) when the part has no such pass
    const double total = (fwd.empty() ? 0 : f) + (bwd.empty() ? 0 : b);
    parts_sum += total;
    row.number("forward_ms", f).number("backward_ms", b).number("total_ms", total);
    row.integer("forward_flops", fwd_flops).integer("training_flops", train_flops);
    results.layers.push_back(row.done());
  };
  add("zero_grad", zero_grad_ms, {}, 0, 0);
  for (const Part& p : parts) add(p.name, p.forward_ms, p.backward_ms, p.forward_flops, p.training_flops);
  add("loss (softmax cross-entropy)", loss_ms, {}, 0, 0);
  add("optimizer step (SGD momentum)", step_ms, {}, 0, 0);
  for (auto [part, total] : {std::pair<const char*, double>{"sum of the parts", parts_sum},
                             std::pair<const char*, double>{"whole step, timed as one", median(whole_ms)}}) {
    Row row = base(part);
    row.null("forward_ms").null("backward_ms").number("total_ms", total);
    row.integer("forward_flops", flops.forward() * batch).integer("training_flops", flops.training() * batch);
    results.layers.push_back(row.done());
  }
  std::fprintf(stderr, "tl bench: layer breakdown of a %s training step at batch %lld: %.2f ms whole, %.2f ms parts\n",
               name.c_str(), (long long)batch, median(whole_ms), parts_sum);
}

}  // namespace tl::app::bench
