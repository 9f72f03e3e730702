// BatchNorm's CUDA twin against the CPU twin (which computes in double and rounds once) on the same
// F32 inputs. Outputs are poisoned with NaN; dgamma/dbeta start from non-zero values (they
// accumulate). Tolerance 1e-5 throughout (DESIGN.md, BN): the GPU's statistics and its training dx
// are double like the CPU's, and y and the eval dx round in float a few times (~1e-7). The shapes
// with 2 values per channel matter for dx: its terms cancel there, which a float dx would not
// survive.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/batchnorm.h"
#include "support/test_util.h"

using namespace tl;
using test::cuda_vs_cpu_error;
using test::poisoned_cuda;
using test::to_cuda;

namespace {

constexpr double kTolerance = 1e-5;
constexpr double kEps = 1e-5;

// Dtypes of the per-channel tensors, each F32 or F64 independently.
struct ChannelTypes {
  const char* name;
  DType gamma, beta, running_mean, running_var, save_mean, save_invstd, dgamma, dbeta;
};
constexpr DType F32 = DType::F32, F64 = DType::F64;
const ChannelTypes kAllF32{"all F32", F32, F32, F32, F32, F32, F32, F32, F32};
const ChannelTypes kLikeLayer{"as BatchNorm2d", F32, F32, F32, F32, F64, F64, F32, F32};
const ChannelTypes kMixed{"mixed", F64, F32, F64, F32, F64, F32, F64, F32};
const ChannelTypes kAllF64{"all F64", F64, F64, F64, F64, F64, F64, F64, F64};

// Max over elements of |a - b| / max(|b|, rms(b)): per channel, so one wrong channel cannot hide in
// an L2 norm over all of them, yet a value near 0 is judged on the scale of the others.
// +inf when the device result has a NaN left (an element never written).
double per_channel_error(Context& ctx, const Tensor& device_result, const Tensor& cpu_result) {
  Tensor a = test::to_host(ctx, device_result);
  if (!test::fully_written(a)) return std::numeric_limits<double>::infinity();
  double sum_sq = 0;
  for (int64_t i = 0; i < cpu_result.numel(); ++i) sum_sq += cpu_result.item(i) * cpu_result.item(i);
  double rms = std::sqrt(sum_sq / static_cast<double>(cpu_result.numel()));
  double worst = 0;
  for (int64_t i = 0; i < cpu_result.numel(); ++i) {
    double b = cpu_result.item(i);
    worst = std::max(worst, std::fabs(a.item(i) - b) / std::max(std::fabs(b), rms));
  }
  return worst;
}

// The host inputs of one case: x with a non-zero mean, per-channel parameters and statistics.
struct Inputs {
  Tensor x, dy, gamma, beta, running_mean, running_var;
};

Inputs random_inputs(Rng& rng, const Shape& shape, const ChannelTypes& t) {
  Shape channels{shape[1]};
  return Inputs{test::random_tensor(rng, shape, F32, -1.5, 2.5),
                test::random_tensor(rng, shape, F32, -1, 1),
                test::random_tensor(rng, channels, t.gamma, 0.5, 1.5),
                test::random_tensor(rng, channels, t.beta, -0.5, 0.5),
                test::random_tensor(rng, channels, t.running_mean, -0.5, 0.5),
                test::random_tensor(rng, channels, t.running_var, 0.5, 2)};
}

// Training forward on both twins, then backward (with every output, and with each subset of the
// optional ones), compared output by output.
void check_train(Context& ctx, Rng& rng, const Inputs& in, const ChannelTypes& t, double momentum) {
  const Shape& shape = in.x.shape();
  const Shape channels{shape[1]};
  INFO("shape ", shape_str(shape), ", per-channel dtypes ", t.name, ", momentum ", momentum);

  // Forward.
  Tensor y = Tensor::empty(shape), save_mean = Tensor::empty(channels, t.save_mean);
  Tensor save_invstd = Tensor::empty(channels, t.save_invstd);
  Tensor running_mean = in.running_mean.clone(), running_var = in.running_var.clone();
  batchnorm_forward_train(ctx, in.x, in.gamma, in.beta, running_mean, running_var, momentum, kEps, y, save_mean,
                          save_invstd);

  Tensor xg = to_cuda(ctx, in.x), dyg = to_cuda(ctx, in.dy), gammag = to_cuda(ctx, in.gamma);
  Tensor betag = to_cuda(ctx, in.beta);
  Tensor running_meang = to_cuda(ctx, in.running_mean), running_varg = to_cuda(ctx, in.running_var);
  Tensor yg = poisoned_cuda(ctx, shape), save_meang = poisoned_cuda(ctx, channels, t.save_mean);
  Tensor save_invstdg = poisoned_cuda(ctx, channels, t.save_invstd);
  batchnorm_forward_train(ctx, xg, gammag, betag, running_meang, running_varg, momentum, kEps, yg, save_meang,
                          save_invstdg);
  CHECK(cuda_vs_cpu_error(ctx, yg, y) <= kTolerance);
  CHECK(per_channel_error(ctx, save_meang, save_mean) <= kTolerance);
  CHECK(per_channel_error(ctx, save_invstdg, save_invstd) <= kTolerance);
  CHECK(per_channel_error(ctx, running_meang, running_mean) <= kTolerance);
  CHECK(per_channel_error(ctx, running_varg, running_var) <= kTolerance);

  // Backward from the CPU's saved statistics on both sides, so that only backward is compared.
  Tensor dgamma_start = test::random_tensor(rng, channels, t.dgamma, 0.5, 1.5);
  Tensor dbeta_start = test::random_tensor(rng, channels, t.dbeta, -1.5, -0.5);
  Tensor dx = Tensor::empty(shape), dgamma = dgamma_start.clone(), dbeta = dbeta_start.clone();
  batchnorm_backward_train(ctx, in.x, in.dy, in.gamma, save_mean, save_invstd, &dx, &dgamma, &dbeta);

  Tensor save_mean_cpu_g = to_cuda(ctx, save_mean), save_invstd_cpu_g = to_cuda(ctx, save_invstd);
  Tensor dxg = poisoned_cuda(ctx, shape);
  Tensor dgammag = to_cuda(ctx, dgamma_start), dbetag = to_cuda(ctx, dbeta_start);
  batchnorm_backward_train(ctx, xg, dyg, gammag, save_mean_cpu_g, save_invstd_cpu_g, &dxg, &dgammag, &dbetag);
  CHECK(cuda_vs_cpu_error(ctx, dxg, dx) <= kTolerance);
  CHECK(per_channel_error(ctx, dgammag, dgamma) <= kTolerance);
  CHECK(per_channel_error(ctx, dbetag, dbeta) <= kTolerance);

  // Optional outputs left out: what is asked for is unchanged.
  Tensor dx_only = poisoned_cuda(ctx, shape);
  batchnorm_backward_train(ctx, xg, dyg, gammag, save_mean_cpu_g, save_invstd_cpu_g, &dx_only, nullptr, nullptr);
  CHECK(cuda_vs_cpu_error(ctx, dx_only, dx) <= kTolerance);
  Tensor dgamma_only = to_cuda(ctx, dgamma_start), dbeta_only = to_cuda(ctx, dbeta_start);
  batchnorm_backward_train(ctx, xg, dyg, gammag, save_mean_cpu_g, save_invstd_cpu_g, nullptr, &dgamma_only, nullptr);
  batchnorm_backward_train(ctx, xg, dyg, gammag, save_mean_cpu_g, save_invstd_cpu_g, nullptr, nullptr, &dbeta_only);
  CHECK(per_channel_error(ctx, dgamma_only, dgamma) <= kTolerance);
  CHECK(per_channel_error(ctx, dbeta_only, dbeta) <= kTolerance);
  batchnorm_backward_train(ctx, xg, dyg, gammag, save_mean_cpu_g, save_invstd_cpu_g, nullptr, nullptr, nullptr);
}

// Eval forward and backward: the running statistics are used and left unchanged.
void check_eval(Context& ctx, Rng& rng, const Inputs& in, const ChannelTypes& t) {
  const Shape& shape = in.x.shape();
  const Shape channels{shape[1]};
  INFO("shape ", shape_str(shape), ", per-channel dtypes ", t.name);

  Tensor y = Tensor::empty(shape);
  batchnorm_forward_eval(ctx, in.x, in.gamma, in.beta, in.running_mean, in.running_var, kEps, y);
  Tensor xg = to_cuda(ctx, in.x), dyg = to_cuda(ctx, in.dy), gammag = to_cuda(ctx, in.gamma);
  Tensor betag = to_cuda(ctx, in.beta);
  Tensor running_meang = to_cuda(ctx, in.running_mean), running_varg = to_cuda(ctx, in.running_var);
  Tensor yg = poisoned_cuda(ctx, shape);
  batchnorm_forward_eval(ctx, xg, gammag, betag, running_meang, running_varg, kEps, yg);
  CHECK(cuda_vs_cpu_error(ctx, yg, y) <= kTolerance);
  CHECK(test::bit_identical(test::to_host(ctx, running_meang), in.running_mean));
  CHECK(test::bit_identical(test::to_host(ctx, running_varg), in.running_var));

  Tensor dgamma_start = test::random_tensor(rng, channels, t.dgamma, 0.5, 1.5);
  Tensor dbeta_start = test::random_tensor(rng, channels, t.dbeta, -1.5, -0.5);
  Tensor dx = Tensor::empty(shape), dgamma = dgamma_start.clone(), dbeta = dbeta_start.clone();
  batchnorm_backward_eval(ctx, in.x, in.dy, in.gamma, in.running_mean, in.running_var, kEps, &dx, &dgamma, &dbeta);
  Tensor dxg = poisoned_cuda(ctx, shape);
  Tensor dgammag = to_cuda(ctx, dgamma_start), dbetag = to_cuda(ctx, dbeta_start);
  batchnorm_backward_eval(ctx, xg, dyg, gammag, running_meang, running_varg, kEps, &dxg, &dgammag, &dbetag);
  CHECK(cuda_vs_cpu_error(ctx, dxg, dx) <= kTolerance);
  CHECK(per_channel_error(ctx, dgammag, dgamma) <= kTolerance);
  CHECK(per_channel_error(ctx, dbetag, dbeta) <= kTolerance);

  // dx alone, with dy standing in for x as BatchNorm2d's frozen backward does (x is not read then).
  Tensor dx_only = poisoned_cuda(ctx, shape);
  batchnorm_backward_eval(ctx, dyg, dyg, gammag, running_meang, running_varg, kEps, &dx_only, nullptr, nullptr);
  CHECK(cuda_vs_cpu_error(ctx, dx_only, dx) <= kTolerance);
  Tensor dgamma_only = to_cuda(ctx, dgamma_start), dbeta_only = to_cuda(ctx, dbeta_start);
  batchnorm_backward_eval(ctx, xg, dyg, gammag, running_meang, running_varg, kEps, nullptr, &dgamma_only, nullptr);
  batchnorm_backward_eval(ctx, xg, dyg, gammag, running_meang, running_varg, kEps, nullptr, nullptr, &dbeta_only);
  CHECK(per_channel_error(ctx, dgamma_only, dgamma) <= kTolerance);
  CHECK(per_channel_error(ctx, dbeta_only, dbeta) <= kTolerance);
}

// Odd sizes, tiny ones, H*W below and above a block, H*W % 4 == 0 (float4 loads) and not, several
// slices per channel (2*3*333*333 and 64*48*7*7 have more values per channel than one block takes),
// and more channels than gridDim.y's 65535 (the reduction blocks then loop over channels and reuse
// their shared memory; the finalize grid has 70000 blocks).
const std::vector<Shape> kShapes{{3, 5, 7, 9},   {1, 1, 1, 2},      {2, 3, 1, 1},   {5, 7, 2, 2},
                                 {64, 48, 7, 7}, {2, 3, 333, 333}, {6, 10, 20, 24}, {2, 70000, 1, 1}};
const std::vector<ChannelTypes> kTypes{kAllF32, kLikeLayer, kMixed, kAllF64};

}  // namespace

CUDA_TEST_CASE("batchnorm training forward and backward on CUDA match the CPU twin") {
  Context ctx({.device = Device::CUDA});
  Rng rng(61);
  for (size_t i = 0; i < kShapes.size(); ++i) {
    const ChannelTypes& types = kTypes[i % kTypes.size()];
    check_train(ctx, rng, random_inputs(rng, kShapes[i], types), types, i % 2 ? 0.1 : 0.37);
  }
}

CUDA_TEST_CASE("batchnorm eval forward and backward on CUDA match the CPU twin") {
  Context ctx({.device = Device::CUDA});
  Rng rng(62);
  for (size_t i = 0; i < kShapes.size(); ++i) {
    const ChannelTypes& types = kTypes[(i + 1) % kTypes.size()];
    check_eval(ctx, rng, random_inputs(rng, kShapes[i], types), types);
  }
}

// ResNet18's first BatchNorm at batch 128 (25.7M values, 401,408 per channel): many slices per
// channel and float4 loads.
CUDA_TEST_CASE("batchnorm on CUDA matches the CPU twin at [128,64,56,56]") {
  Context ctx({.device = Device::CUDA});
  Rng rng(63);
  Inputs in = random_inputs(rng, {128, 64, 56, 56}, kLikeLayer);
  check_train(ctx, rng, in, kLikeLayer, 0.1);
  check_eval(ctx, rng, in, kLikeLayer);
}

// |mean| >> std: mean 1e4 with variance 1e-4 (std 0.01, about 10 float ulps of 1e4), mean -1e4
// likewise, mean 1e3 with variance 1e-6, and one ordinary channel. The CPU twin is two-pass in
// double, so it is exact here to float rounding; the tolerance stays 1e-5 because the GPU's double
// shifted sums lose at most log2(N*H*W) bits of 53 and its x - mean is taken against a two-float
// mean. A float one-pass E[x^2] - E[x]^2 gets the variance wrong by orders of magnitude, and
// x - float(mean) errs by up to 5% of a standard deviation: either fails by far.
CUDA_TEST_CASE("batchnorm on CUDA keeps its accuracy when |mean| >> std") {
  Context ctx({.device = Device::CUDA});
  Rng rng(64);
  const double means[] = {1e4, -1e4, 1e3, 0.3};
  const double stds[] = {1e-2, 1e-2, 1e-3, 1.0};
  for (Shape shape : {Shape{8, 4, 33, 31}, Shape{16, 4, 64, 64}}) {
    Inputs in = random_inputs(rng, shape, kLikeLayer);
    float* x = in.x.data<float>();
    int64_t hw = shape[2] * shape[3];
    for (int64_t n = 0; n < shape[0]; ++n)
      for (int64_t c = 0; c < 4; ++c)
        for (int64_t i = 0; i < hw; ++i) {
          float& v = x[(n * 4 + c) * hw + i];
          v = static_cast<float>(means[c] + stds[c] * std::sqrt(3.0) * (2 * rng.uniform() - 1));
        }
    check_train(ctx, rng, in, kLikeLayer, 0.1);
    check_eval(ctx, rng, in, kLikeLayer);
  }
}

CUDA_TEST_CASE("batchnorm on CUDA rejects F64 activations") {
  Context ctx({.device = Device::CUDA});
  Tensor x = Tensor::zeros(ctx, {2, 3, 4, 4}, F64, Device::CUDA), y = Tensor::zeros(ctx, {2, 3, 4, 4}, F64, Device::CUDA);
  Tensor ones = Tensor::zeros(ctx, {3}, F32, Device::CUDA);
  Tensor mean = Tensor::zeros(ctx, {3}, F64, Device::CUDA), invstd = Tensor::zeros(ctx, {3}, F64, Device::CUDA);
  CHECK_THROWS_WITH(batchnorm_forward_eval(ctx, x, ones, ones, ones, ones, kEps, y),
                    doctest::Contains("batchnorm_forward_eval: CUDA kernel needs an F32 CUDA tensor"));
  CHECK_THROWS_WITH(batchnorm_forward_train(ctx, x, ones, ones, ones, ones, 0.1, kEps, y, mean, invstd),
                    doctest::Contains("batchnorm_forward_train: CUDA kernel needs an F32 CUDA tensor"));
}
