#include "layers/models/flops.h"

#include "engine/error.h"
#include "kernels/conv2d.h"
#include "kernels/pool2d.h"
#include "layers/adaptive_avgpool2d.h"
#include "layers/avgpool2d.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/maxpool2d.h"

namespace tl {

namespace {

std::string where(const Layer& layer) {
  return str("layer ", layer.path().empty() ? "(root)" : layer.path(), " (", layer.kind(), ")");
}

Shape pooled(const Shape& in, const Pool2dParams& p) {
  return {in[0], pool2d_output_size(in[1], p.kernel_h, p.stride_h, p.pad_h),
          pool2d_output_size(in[2], p.kernel_w, p.stride_w, p.pad_w)};
}

// Appends the matmul layers under `layer` to `out` and returns the per-image output shape.
Shape walk(Layer& layer, const Shape& in, std::vector<MatmulLayerFlops>& out) {
  const std::string& kind = layer.kind();
  if (kind == "Sequential") {
    Shape shape = in;
    for (auto& [name, child] : layer.children()) shape = walk(*child, shape, out);
    return shape;
  }
  if (kind == "BasicBlock") {
    // Main branch in order, then the downsample on the block's input; the sum has the main branch's shape.
    Shape shape = in;
    Layer* downsample = nullptr;
    for (auto& [name, child] : layer.children()) {
      if (name == "downsample") {
        downsample = child;
        continue;
      }
      shape = walk(*child, shape, out);
    }
    if (downsample) {
      Shape shortcut = walk(*downsample, in, out);
      TL_CHECK(shortcut == shape, where(layer), ": main branch ", shape_str(shape), " vs shortcut ",
               shape_str(shortcut));
    }
    return shape;
  }
  if (kind == "ReLU" || kind == "BatchNorm2d" || kind == "Dropout") return in;
  if (kind == "Flatten") {
    TL_CHECK(!in.empty(), where(layer), ": cannot flatten a scalar");
    return {shape_numel(in)};
  }
  if (auto* linear = dynamic_cast<Linear*>(&layer)) {
    const Shape& w = linear->weight.value.shape();  // [out, in]
    TL_CHECK(in.size() == 1 && in[0] == w[1], where(layer), ": input ", shape_str(in), " expected [", w[1], "]");
    out.push_back({layer.path(), kind, 2 * w[0] * w[1], linear->weight.trainable(), layer.input_requires_grad()});
    return {w[0]};
  }
  TL_CHECK(in.size() == 3, where(layer), ": input ", shape_str(in), " is not a [C,H,W] feature map");
  if (auto* conv = dynamic_cast<Conv2d*>(&layer)) {
    const Shape& w = conv->weight.value.shape();  // [O, C, KH, KW]
    TL_CHECK(in[0] == w[1], where(layer), ": input ", shape_str(in), " has ", in[0], " channels, expected ", w[1]);
    const Conv2dParams& p = conv->params();
    int64_t oh = conv2d_output_size(in[1], w[2], p.stride_h, p.pad_h);
    int64_t ow = conv2d_output_size(in[2], w[3], p.stride_w, p.pad_w);
    int64_t flops = 2 * w[1] * w[2] * w[3] * oh * ow * w[0];
    out.push_back({layer.path(), kind, flops, conv->weight.trainable(), layer.input_requires_grad()});
    return {w[0], oh, ow};
  }
  if (auto* pool = dynamic_cast<MaxPool2d*>(&layer)) return pooled(in, pool->params());
  if (auto* pool = dynamic_cast<AvgPool2d*>(&layer)) return pooled(in, pool->params());
  if (auto* pool = dynamic_cast<AdaptiveAvgPool2d*>(&layer)) return {in[0], pool->out_h(), pool->out_w()};
  throw Error(str(where(layer), ": unknown to the FLOP count"));
}

bool under(const std::string& path, const std::string& prefix) {
  return path == prefix || (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
                            path[prefix.size()] == '.');
}

}  // namespace

int64_t ModelFlops::forward() const {
  int64_t sum = 0;
  for (const auto& l : layers) sum += l.forward;
  return sum;
}

int64_t ModelFlops::training() const {
  int64_t sum = 0;
  for (const auto& l : layers) sum += l.training();
  return sum;
}

int64_t ModelFlops::forward_under(const std::string& prefix) const {
  int64_t sum = 0;
  for (const auto& l : layers)
    if (under(l.path, prefix)) sum += l.forward;
  return sum;
}

int64_t ModelFlops::training_under(const std::string& prefix) const {
  int64_t sum = 0;
  for (const auto& l : layers)
    if (under(l.path, prefix)) sum += l.training();
  return sum;
}

ModelFlops count_model_flops(Model& model, const Shape& image_shape) {
  TL_CHECK(image_shape.size() == 3, "count_model_flops: image shape ", shape_str(image_shape),
           " is not {C, H, W}");
  model.assign_paths();
  // The model's input never needs a gradient: the same plan Model::forward makes in Train mode.
  model.root().plan_backward(false);
  ModelFlops flops;
  walk(model.root(), image_shape, flops.layers);
  return flops;
}

}  // namespace tl
