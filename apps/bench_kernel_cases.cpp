// The kernels tl bench --kernels measures, each with the least bytes it must move and, where cuDNN has the same
// operation, the cuDNN call that does it (BatchNorm, pooling, ReLU activation, tensor add/scale, softmax).
#include <cuda_runtime.h>
#include <cudnn.h>

#include <memory>

#include "apps/bench_cudnn.h"
#include "apps/bench_kernels.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/accuracy.h"
#include "kernels/batchnorm.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/normalize_image.h"
#include "kernels/optimizer_update.h"
#include "kernels/pool2d.h"
#include "kernels/relu.h"
#include "kernels/softmax_cross_entropy.h"

namespace tl::app::bench {

namespace {

const float kOne = 1.0f, kZero = 0.0f;
constexpr double kEps = 1e-5, kMomentum = 0.1;
constexpr int64_t kResnet18Parameters = 11'689'512;

Tensor random_f32(Context& g, const Shape& shape, uint64_t seed, float lo = -1, float hi = 1) {
  Tensor host = Tensor::empty(shape);
  Rng rng(seed);
  float* p = host.data<float>();
  for (int64_t i = 0; i < host.numel(); ++i) p[i] = lo + (hi - lo) * static_cast<float>(rng.uniform());
  return host.to(g, Device::CUDA);
}

Tensor random_u8(Context& g, const Shape& shape, uint64_t seed) {
  Tensor host = Tensor::empty(shape, DType::U8);
  Rng rng(seed);
  uint8_t* p = host.data<uint8_t>();
  for (int64_t i = 0; i < host.numel(); ++i) p[i] = static_cast<uint8_t>(rng.below(256));
  return host.to(g, Device::CUDA);
}

Tensor random_labels_on(Context& g, int64_t n, int64_t classes, uint64_t seed) {
  Tensor host = Tensor::empty({n}, DType::I64);
  Rng rng(seed);
  int64_t* p = host.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int64_t>(rng.below(static_cast<uint64_t>(classes)));
  return host.to(g, Device::CUDA);
}

Tensor empty_f32(Context& g, const Shape& shape) { return Tensor::empty(g, shape, DType::F32, Device::CUDA); }
Tensor zeros_f32(Context& g, const Shape& shape) { return Tensor::zeros(g, shape, DType::F32, Device::CUDA); }
int64_t f32_bytes(const Shape& shape) { return shape_numel(shape) * 4; }
cudnnHandle_t dnn(Context& g) { return g.cuda().cudnn(); }

void add_elementwise(std::vector<KernelCase>& cases, const Shape& act) {
  auto d = std::make_shared<CudnnTensor>(act);
  auto relu = std::make_shared<CudnnRelu>();
  auto add = std::make_shared<CudnnAdd>();
  const int64_t b = f32_bytes(act);
  const std::string shape = "x " + shape_str(act);

  cases.push_back({"relu_forward", shape, 2 * b, [act](Context& g) { return TensorSet{random_f32(g, act, 1), empty_f32(g, act)}; },
                   nullptr, [](Context& g, TensorSet& s) { relu_forward(g, s[0], s[1]); },
                   "cudnnActivationForward (ReLU)", 2 * b, nullptr, [d, relu](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnActivationForward(dnn(g), relu->get(), &kOne, d->get(), s[0].raw(), &kZero,
                                                          d->get(), s[1].raw()));
                   }});
  cases.push_back({"relu_backward", shape, 3 * b,
                   [act](Context& g) { return TensorSet{random_f32(g, act, 2), random_f32(g, act, 3), empty_f32(g, act)}; },
                   nullptr, [](Context& g, TensorSet& s) { relu_backward(g, s[0], s[1], s[2]); },
                   "cudnnActivationBackward (ReLU)", 3 * b, nullptr, [d, relu](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnActivationBackward(dnn(g), relu->get(), &kOne, d->get(), s[0].raw(), d->get(),
                                                           s[1].raw(), d->get(), s[0].raw(), &kZero, d->get(),
                                                           s[2].raw()));
                   }});
  cases.push_back({"add_forward (residual sum)", shape, 3 * b,
                   [act](Context& g) { return TensorSet{random_f32(g, act, 4), random_f32(g, act, 5), empty_f32(g, act)}; },
                   nullptr, [](Context& g, TensorSet& s) { add_forward(g, s[0], s[1], s[2]); },
                   "cudnnOpTensor (ADD)", 3 * b, nullptr, [d, add](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnOpTensor(dnn(g), add->get(), &kOne, d->get(), s[0].raw(), &kOne, d->get(),
                                                 s[1].raw(), &kZero, d->get(), s[2].raw()));
                   }});
  cases.push_back({"add_into (gradient sum)", shape, 3 * b,
                   [act](Context& g) { return TensorSet{random_f32(g, act, 6), random_f32(g, act, 7)}; }, nullptr,
                   [](Context& g, TensorSet& s) { add_into(g, s[0], s[1]); }, "cudnnAddTensor", 3 * b, nullptr,
                   [d](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnAddTensor(dnn(g), &kOne, d->get(), s[1].raw(), &kOne, d->get(), s[0].raw()));
                   }});
  // 0.999 rather than 1: a kernel may skip a scale by one; a few dozen calls per set keep values far from denormal.
  cases.push_back({"scale_into", shape, 2 * b, [act](Context& g) { return TensorSet{random_f32(g, act, 8)}; }, nullptr,
                   [](Context& g, TensorSet& s) { scale_into(g, s[0], 0.999); }, "cudnnScaleTensor", 2 * b, nullptr,
                   [d](Context& g, TensorSet& s) {
                     const float alpha = 0.999f;
                     TL_CUDA_CHECK(cudnnScaleTensor(dnn(g), d->get(), s[0].raw(), &alpha));
                   }});
  cases.push_back({"dropout_forward (p=0.5)", shape, 2 * b,
                   [act](Context& g) { return TensorSet{random_f32(g, act, 9), empty_f32(g, act)}; }, nullptr,
                   [](Context& g, TensorSet& s) { dropout_forward(g, s[0], 0.5, 77, s[1]); }, "", 0, nullptr, nullptr});
  cases.push_back({"dropout_backward (p=0.5)", shape, 2 * b,
                   [act](Context& g) { return TensorSet{random_f32(g, act, 10), empty_f32(g, act)}; }, nullptr,
                   [](Context& g, TensorSet& s) { dropout_backward(g, s[0], 0.5, 77, s[1]); }, "", 0, nullptr, nullptr});
  cases.push_back({"cudaMemcpyAsync device to device", shape, 2 * b,
                   [act](Context& g) { return TensorSet{random_f32(g, act, 11), empty_f32(g, act)}; }, nullptr,
                   [](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudaMemcpyAsync(s[1].raw(), s[0].raw(), s[0].nbytes(), cudaMemcpyDeviceToDevice,
                                                   g.cuda().stream));
                   },
                   "", 0, nullptr, nullptr});
}

void add_batchnorm(std::vector<KernelCase>& cases, const Shape& act) {
  auto d = std::make_shared<CudnnTensor>(act);
  auto bn = std::make_shared<CudnnTensor>(CudnnTensor::batchnorm_params(*d));
  const Shape c = {act[1]};
  const int64_t b = f32_bytes(act);
  const std::string shape = "x " + shape_str(act);
  // Set layout: 0 x, 1 gamma, 2 beta, 3 running_mean, 4 running_var, 5 y, 6 save_mean, 7 save_invstd, 8 dy, 9 dx,
  // 10 dgamma, 11 dbeta.
  auto make = [act, c](Context& g) {
    return TensorSet{random_f32(g, act, 21), random_f32(g, c, 22, 0.5f, 1.5f), random_f32(g, c, 23, -0.1f, 0.1f),
                     random_f32(g, c, 24, -0.1f, 0.1f), random_f32(g, c, 25, 0.5f, 1.5f), empty_f32(g, act),
                     empty_f32(g, c), empty_f32(g, c), random_f32(g, act, 26), empty_f32(g, act), zeros_f32(g, c),
                     zeros_f32(g, c)};
  };
  auto ours_forward = [](Context& g, TensorSet& s) {
    batchnorm_forward_train(g, s[0], s[1], s[2], s[3], s[4], kMomentum, kEps, s[5], s[6], s[7]);
  };
  auto cudnn_forward = [d, bn](Context& g, TensorSet& s) {
    TL_CUDA_CHECK(cudnnBatchNormalizationForwardTraining(dnn(g), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, d->get(),
                                                         s[0].raw(), d->get(), s[5].raw(), bn->get(), s[1].raw(),
                                                         s[2].raw(), kMomentum, s[3].raw(), s[4].raw(), kEps,
                                                         s[6].raw(), s[7].raw()));
  };
  cases.push_back({"batchnorm_forward_train", shape, 2 * b, make, nullptr, ours_forward,
                   "cudnnBatchNormalizationForwardTraining", 2 * b, nullptr, cudnn_forward});
  cases.push_back({"batchnorm_forward_eval", shape, 2 * b, make, nullptr,
                   [](Context& g, TensorSet& s) { batchnorm_forward_eval(g, s[0], s[1], s[2], s[3], s[4], kEps, s[5]); },
                   "cudnnBatchNormalizationForwardInference", 2 * b, nullptr, [d, bn](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnBatchNormalizationForwardInference(
                         dnn(g), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, d->get(), s[0].raw(), d->get(), s[5].raw(),
                         bn->get(), s[1].raw(), s[2].raw(), s[3].raw(), s[4].raw(), kEps));
                   }});
  // Backward reads x and dy and writes dx; dgamma/dbeta accumulate on both sides (cuDNN's betaParamDiff = 1).
  cases.push_back({"batchnorm_backward_train", shape, 3 * b, make, ours_forward,
                   [](Context& g, TensorSet& s) {
                     batchnorm_backward_train(g, s[0], s[8], s[1], s[6], s[7], &s[9], &s[10], &s[11]);
                   },
                   "cudnnBatchNormalizationBackward", 3 * b, cudnn_forward, [d, bn](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnBatchNormalizationBackward(
                         dnn(g), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, &kOne, &kOne, d->get(), s[0].raw(), d->get(),
                         s[8].raw(), d->get(), s[9].raw(), bn->get(), s[1].raw(), s[10].raw(), s[11].raw(), kEps,
                         s[6].raw(), s[7].raw()));
                   }});
  // A frozen BatchNorm in a fine-tuned model: only dx, from dy and the running statistics.
  cases.push_back({"batchnorm_backward_eval (dx only)", shape, 2 * b, make, nullptr,
                   [](Context& g, TensorSet& s) {
                     batchnorm_backward_eval(g, s[0], s[8], s[1], s[3], s[4], kEps, &s[9], nullptr, nullptr);
                   },
                   "", 0, nullptr, nullptr});
}

void add_pooling(std::vector<KernelCase>& cases, int64_t batch) {
  // ResNet18's max pool: 3x3, stride 2, padding 1 on conv1's output.
  const Shape in = {batch, 64, 112, 112}, out = {batch, 64, 56, 56};
  auto din = std::make_shared<CudnnTensor>(in);
  auto dout = std::make_shared<CudnnTensor>(out);
  auto max = std::make_shared<CudnnPooling>(CUDNN_POOLING_MAX, 3, 2, 1);
  const Pool2dParams p = square_pool_params("bench", 3, 2, 1);
  const int64_t bi = f32_bytes(in), bo = f32_bytes(out);
  // 0 x, 1 y, 2 indices (I64), 3 dy, 4 dx
  auto make = [in, out](Context& g) {
    return TensorSet{random_f32(g, in, 31), empty_f32(g, out), Tensor::empty(g, out, DType::I64, Device::CUDA),
                     random_f32(g, out, 32), empty_f32(g, in)};
  };
  auto ours_forward = [p](Context& g, TensorSet& s) { maxpool2d_forward(g, s[0], s[1], s[2], p); };
  auto cudnn_forward = [din, dout, max](Context& g, TensorSet& s) {
    TL_CUDA_CHECK(cudnnPoolingForward(dnn(g), max->get(), &kOne, din->get(), s[0].raw(), &kZero, dout->get(),
                                      s[1].raw()));
  };
  const std::string shape = "x " + shape_str(in) + " 3x3/2 pad 1";
  // Ours also writes the argmax (8 bytes per output) that its backward reads; cuDNN's backward re-reads x and y.
  cases.push_back({"maxpool2d_forward", shape, bi + 3 * bo, make, nullptr, ours_forward, "cudnnPoolingForward (MAX)",
                   bi + bo, nullptr, cudnn_forward});
  cases.push_back({"maxpool2d_backward", shape, 3 * bo + bi, make, ours_forward,
                   [](Context& g, TensorSet& s) { maxpool2d_backward(g, s[3], s[2], s[4]); },
                   "cudnnPoolingBackward (MAX)", 2 * bo + 2 * bi, cudnn_forward,
                   [din, dout, max](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnPoolingBackward(dnn(g), max->get(), &kOne, dout->get(), s[1].raw(), dout->get(),
                                                        s[3].raw(), din->get(), s[0].raw(), &kZero, din->get(),
                                                        s[4].raw()));
                   }});

  // ResNet18's global average pool on layer4's output.
  const Shape gin = {batch, 512, 7, 7}, gout = {batch, 512, 1, 1};
  auto dgin = std::make_shared<CudnnTensor>(gin);
  auto dgout = std::make_shared<CudnnTensor>(gout);
  auto avg = std::make_shared<CudnnPooling>(CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING, 7, 7, 0);
  const int64_t gbi = f32_bytes(gin), gbo = f32_bytes(gout);
  auto gmake = [gin, gout](Context& g) {
    return TensorSet{random_f32(g, gin, 33), empty_f32(g, gout), random_f32(g, gout, 34), empty_f32(g, gin)};
  };
  const std::string gshape = "x " + shape_str(gin) + " to 1x1";
  cases.push_back({"adaptive_avgpool2d_forward", gshape, gbi + gbo, gmake, nullptr,
                   [](Context& g, TensorSet& s) { adaptive_avgpool2d_forward(g, s[0], s[1]); },
                   "cudnnPoolingForward (AVERAGE 7x7)", gbi + gbo, nullptr, [dgin, dgout, avg](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnPoolingForward(dnn(g), avg->get(), &kOne, dgin->get(), s[0].raw(), &kZero,
                                                       dgout->get(), s[1].raw()));
                   }});
  cases.push_back({"adaptive_avgpool2d_backward", gshape, gbo + gbi, gmake, nullptr,
                   [](Context& g, TensorSet& s) { adaptive_avgpool2d_backward(g, s[2], s[3]); },
                   "cudnnPoolingBackward (AVERAGE 7x7)", gbo + gbi, nullptr,
                   [dgin, dgout, avg](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnPoolingBackward(dnn(g), avg->get(), &kOne, dgout->get(), s[1].raw(),
                                                        dgout->get(), s[2].raw(), dgin->get(), s[0].raw(), &kZero,
                                                        dgin->get(), s[3].raw()));
                   }});
}

void add_softmax(std::vector<KernelCase>& cases, int64_t batch) {
  const Shape logits = {batch, 1000};
  auto d = std::make_shared<CudnnTensor>(logits);
  const int64_t b = f32_bytes(logits);
  const std::string shape = "logits " + shape_str(logits);
  cases.push_back({"softmax", shape, 2 * b,
                   [logits](Context& g) { return TensorSet{random_f32(g, logits, 41, -5, 5), empty_f32(g, logits)}; },
                   nullptr, [](Context& g, TensorSet& s) { softmax(g, s[0], s[1]); },
                   "cudnnSoftmaxForward (ACCURATE, INSTANCE)", 2 * b, nullptr, [d](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnSoftmaxForward(dnn(g), CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE,
                                                       &kOne, d->get(), s[0].raw(), &kZero, d->get(), s[1].raw()));
                   }});
  // The loss comes back to the host (one copy and a stream synchronisation per call): that is part of its cost.
  // cuDNN has no fused loss; its log-softmax is the nearest single call.
  cases.push_back({"softmax_cross_entropy (loss + dlogits)", shape, 2 * b + batch * 8,
                   [logits, batch](Context& g) {
                     return TensorSet{random_f32(g, logits, 42, -5, 5), random_labels_on(g, batch, 1000, 43),
                                      empty_f32(g, logits)};
                   },
                   nullptr, [](Context& g, TensorSet& s) { softmax_cross_entropy(g, s[0], s[1], 0.0, &s[2]); },
                   "cudnnSoftmaxForward (LOG, INSTANCE)", 2 * b, nullptr, [d](Context& g, TensorSet& s) {
                     TL_CUDA_CHECK(cudnnSoftmaxForward(dnn(g), CUDNN_SOFTMAX_LOG, CUDNN_SOFTMAX_MODE_INSTANCE, &kOne,
                                                       d->get(), s[0].raw(), &kZero, d->get(), s[2].raw()));
                   }});
  // Evaluation's top-1 count: the count comes back to the host (one copy and a synchronisation), as the loss does.
  cases.push_back({"argmax_rows", shape, b + batch * 8,
                   [logits](Context& g) {
                     return TensorSet{random_f32(g, logits, 44, -5, 5), Tensor::empty(g, {logits[0]}, DType::I64, Device::CUDA)};
                   },
                   nullptr, [](Context& g, TensorSet& s) { argmax_rows(g, s[0], s[1]); }, "", 0, nullptr, nullptr});
  cases.push_back({"count_correct (to the host)", shape, b + batch * 8,
                   [logits, batch](Context& g) {
                     return TensorSet{random_f32(g, logits, 45, -5, 5), random_labels_on(g, batch, 1000, 46)};
                   },
                   nullptr, [](Context& g, TensorSet& s) { count_correct(g, s[0], s[1]); }, "", 0, nullptr, nullptr});
}

void add_optimizers(std::vector<KernelCase>& cases) {
  const Shape p = {kResnet18Parameters};
  const int64_t b = f32_bytes(p);
  const std::string shape = "ResNet18's " + std::to_string(kResnet18Parameters) + " parameters as one tensor";
  cases.push_back({"sgd_update (momentum 0.9)", shape, 5 * b,
                   [p](Context& g) { return TensorSet{random_f32(g, p, 51), random_f32(g, p, 52), random_f32(g, p, 53)}; },
                   nullptr,
                   [](Context& g, TensorSet& s) { sgd_update(g, s[0], s[1], &s[2], 1e-4, 0.9, 0, false, 0, false); }, "",
                   0, nullptr, nullptr});
  auto step = std::make_shared<int64_t>(0);
  cases.push_back({"adam_update", shape, 7 * b,
                   [p](Context& g) {
                     return TensorSet{random_f32(g, p, 54), random_f32(g, p, 55), random_f32(g, p, 56),
                                      random_f32(g, p, 57, 0, 1)};
                   },
                   nullptr,
                   [step](Context& g, TensorSet& s) {
                     adam_update(g, s[0], s[1], s[2], s[3], 1e-3, 0.9, 0.999, 1e-8, 0, false, ++*step);
                   },
                   "", 0, nullptr, nullptr});
}

void add_normalize(std::vector<KernelCase>& cases, int64_t batch) {
  const Shape pixels = {batch, 224, 224, 3}, out = {batch, 3, 224, 224};
  const int64_t n = shape_numel(pixels);
  cases.push_back({"normalize_image (U8 HWC to F32 CHW)", "pixels " + shape_str(pixels), n + 4 * n,
                   [pixels, out](Context& g) { return TensorSet{random_u8(g, pixels, 61), empty_f32(g, out)}; }, nullptr,
                   [](Context& g, TensorSet& s) { normalize_image(g, s[0], torchvision_normalize_spec(), s[1]); }, "", 0,
                   nullptr, nullptr});
}

}  // namespace

std::vector<KernelCase> kernel_cases(int64_t batch) {
  const Shape act = {batch, 64, 56, 56};  // ResNet18's layer1 activation
  std::vector<KernelCase> cases;
  add_elementwise(cases, act);
  add_batchnorm(cases, act);
  add_pooling(cases, batch);
  add_softmax(cases, batch);
  add_optimizers(cases);
  add_normalize(cases, batch);
  return cases;
}

}  // namespace tl::app::bench
