// Pooling on CUDA against the CPU twin. The CUDA kernels redo the CPU twin's arithmetic in the same
// order (window scans row-major, double sums for the averages, backward sums in increasing output
// order), so results are compared bit for bit, and the DESIGN.md bound (relative L2 <= 1e-5, with every
// poisoned element written) is checked as well. The one exception is global average pooling (output
// 1x1), whose warp reduction sums in another order: within 1e-5, not bit for bit.
#include <cmath>
#include <limits>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/pool2d.h"
#include "support/test_util.h"

using namespace tl;

namespace {

Shape pooled(const Shape& x, const Pool2dParams& p) {
  return {x[0], x[1], pool2d_output_size(x[2], p.kernel_h, p.stride_h, p.pad_h),
          pool2d_output_size(x[3], p.kernel_w, p.stride_w, p.pad_w)};
}

// The device result equals the CPU twin's bit for bit, and every poisoned element was written.
void check_exact(Context& ctx, const char* what, const Tensor& device_result, const Tensor& cpu_result) {
  INFO(what, " ", shape_str(cpu_result.shape()));
  CHECK(test::cuda_vs_cpu_error(ctx, device_result, cpu_result) <= 1e-5);
  CHECK(test::bit_identical(test::to_host(ctx, device_result), cpu_result));
}

// Max pooling both ways on x (a CPU F32 tensor): values and I64 indices exactly, then dx from both
// backward entry points (the ordered per-plane scatter without geometry, the gather with it).
// Poisoning: y with NaN, indices with -1, dx with NaN.
void check_maxpool(Context& ctx, Rng& rng, const Tensor& x, const Pool2dParams& p, bool values_may_be_nan = false) {
  const Shape out = pooled(x.shape(), p);
  INFO("maxpool ", shape_str(x.shape()), " kernel ", p.kernel_h, " stride ", p.stride_h, " pad ", p.pad_h);
  Tensor y = Tensor::empty(out), indices = Tensor::empty(out, DType::I64);
  maxpool2d_forward(ctx, x, y, indices, p);

  Tensor y_cuda = test::poisoned_cuda(ctx, out), indices_cuda = test::poisoned_cuda(ctx, out, DType::I64);
  maxpool2d_forward(ctx, test::to_cuda(ctx, x), y_cuda, indices_cuda, p);
  CHECK(test::bit_identical(test::to_host(ctx, indices_cuda), indices));  // no -1 left, same positions
  if (values_may_be_nan) CHECK(test::bit_identical(test::to_host(ctx, y_cuda), y));  // NaN is a valid maximum
  else check_exact(ctx, "maxpool2d_forward", y_cuda, y);

  Tensor dy = test::random_tensor(rng, out, DType::F32);
  Tensor dx = Tensor::empty(x.shape());
  maxpool2d_backward(ctx, dy, indices, dx);
  Tensor dy_cuda = test::to_cuda(ctx, dy);
  Tensor dx_scatter = test::poisoned_cuda(ctx, x.shape());
  maxpool2d_backward(ctx, dy_cuda, indices_cuda, dx_scatter);
  check_exact(ctx, "maxpool2d_backward (ordered scatter)", dx_scatter, dx);
  Tensor dx_gather = test::poisoned_cuda(ctx, x.shape());
  maxpool2d_backward(ctx, dy_cuda, indices_cuda, dx_gather, p);
  check_exact(ctx, "maxpool2d_backward (gather)", dx_gather, dx);
}

void check_avgpool(Context& ctx, Rng& rng, const Shape& shape, const Pool2dParams& p) {
  const Shape out = pooled(shape, p);
  INFO("avgpool ", shape_str(shape), " kernel ", p.kernel_h, " stride ", p.stride_h, " pad ", p.pad_h);
  Tensor x = test::random_tensor(rng, shape, DType::F32);
  Tensor y = Tensor::empty(out);
  avgpool2d_forward(ctx, x, y, p);
  Tensor y_cuda = test::poisoned_cuda(ctx, out);
  avgpool2d_forward(ctx, test::to_cuda(ctx, x), y_cuda, p);
  check_exact(ctx, "avgpool2d_forward", y_cuda, y);

  Tensor dy = test::random_tensor(rng, out, DType::F32);
  Tensor dx = Tensor::empty(shape);
  avgpool2d_backward(ctx, dy, dx, p);
  Tensor dx_cuda = test::poisoned_cuda(ctx, shape);
  avgpool2d_backward(ctx, test::to_cuda(ctx, dy), dx_cuda, p);
  check_exact(ctx, "avgpool2d_backward", dx_cuda, dx);
}

void check_adaptive(Context& ctx, Rng& rng, const Shape& shape, int64_t oh, int64_t ow) {
  const Shape out = {shape[0], shape[1], oh, ow};
  INFO("adaptive_avgpool ", shape_str(shape), " -> ", shape_str(out));
  Tensor x = test::random_tensor(rng, shape, DType::F32);
  Tensor y = Tensor::empty(out);
  adaptive_avgpool2d_forward(ctx, x, y);
  Tensor y_cuda = test::poisoned_cuda(ctx, out);
  adaptive_avgpool2d_forward(ctx, test::to_cuda(ctx, x), y_cuda);
  if (oh == 1 && ow == 1) {
    // Global pooling: one warp per plane sums in double in another order; the double sums agree to
    // ~1e-16 relative, so the floats agree to within one rounding (1e-5 is the DESIGN.md bound).
    CHECK(test::cuda_vs_cpu_error(ctx, y_cuda, y) <= 1e-5);
    CHECK(test::max_abs_diff(test::to_host(ctx, y_cuda), y) <= 1e-6);
  } else {
    check_exact(ctx, "adaptive_avgpool2d_forward", y_cuda, y);
  }

  Tensor dy = test::random_tensor(rng, out, DType::F32);
  Tensor dx = Tensor::empty(shape);
  adaptive_avgpool2d_backward(ctx, dy, dx);
  Tensor dx_cuda = test::poisoned_cuda(ctx, shape);
  adaptive_avgpool2d_backward(ctx, test::to_cuda(ctx, dy), dx_cuda);
  check_exact(ctx, "adaptive_avgpool2d_backward", dx_cuda, dx);
}

const Pool2dParams kK3S2P1 = {3, 3, 2, 2, 1, 1};
const Pool2dParams kK2S2 = {2, 2, 2, 2, 0, 0};

}  // namespace

CUDA_TEST_CASE("maxpool2d on CUDA matches the CPU twin: values, indices and both backward paths") {
  Context ctx({.device = Device::CUDA});
  Rng rng(5);
  // Distinct values: no ties, so the argmax is unique. Kernel 3 stride 2 windows overlap, so some
  // inputs are the maximum of two or four windows and their gradients are sums.
  check_maxpool(ctx, rng, test::random_distinct(rng, {3, 5, 7, 9}, DType::F32), kK3S2P1);
  check_maxpool(ctx, rng, test::random_distinct(rng, {3, 5, 7, 9}, DType::F32), kK2S2);
  check_maxpool(ctx, rng, test::random_distinct(rng, {2, 3, 5, 4}, DType::F32), {3, 2, 1, 2, 1, 0});  // non-square
  check_maxpool(ctx, rng, test::random_distinct(rng, {1, 1, 1, 1}, DType::F32), {1, 1, 1, 1, 0, 0});  // one element
  check_maxpool(ctx, rng, test::random_distinct(rng, {1, 1, 2, 2}, DType::F32), {2, 2, 1, 1, 1, 1});  // pad > 0
}

CUDA_TEST_CASE("maxpool2d on CUDA matches the CPU twin on ResNet's stem pool [2,64,112,112]") {
  Context ctx({.device = Device::CUDA});
  Rng rng(7);
  check_maxpool(ctx, rng, test::random_distinct(rng, {2, 64, 112, 112}, DType::F32), kK3S2P1);
}

// 563,200 planes: more than the 65536 * 8 warps of a full grid, so the warp-per-plane kernels (the
// ordered scatter here, global average pooling below) take their grid-stride step to a second plane.
CUDA_TEST_CASE("pool2d warp-per-plane kernels on CUDA cover more planes than one grid holds") {
  Context ctx({.device = Device::CUDA});
  Rng rng(19);
  check_maxpool(ctx, rng, test::random_distinct(rng, {1100, 512, 2, 2}, DType::F32), kK2S2);
  check_adaptive(ctx, rng, {1100, 512, 2, 2}, 1, 1);
}

CUDA_TEST_CASE("maxpool2d on CUDA breaks ties, handles -inf and propagates NaN exactly as the CPU twin") {
  Context ctx({.device = Device::CUDA});
  Rng rng(11);
  // Three values only: every window holds ties, and the first maximum in row-major window order wins.
  Tensor ties = Tensor::empty({2, 3, 7, 9});
  for (int64_t i = 0; i < ties.numel(); ++i) ties.data<float>()[i] = 0.25f * float(rng.below(3));
  check_maxpool(ctx, rng, ties, kK3S2P1);
  check_maxpool(ctx, rng, ties, kK2S2);

  // One plane entirely -inf (the first in-bounds position wins) and NaNs in another (NaN wins).
  Tensor special = test::random_distinct(rng, {2, 3, 7, 9}, DType::F32);
  float* v = special.data<float>();
  for (int64_t i = 0; i < 63; ++i) v[63 * 4 + i] = -std::numeric_limits<float>::infinity();  // plane (1, 1)
  v[63 * 2 + 10] = std::numeric_limits<float>::quiet_NaN();  // plane (0, 2): two NaNs share a window
  v[63 * 2 + 11] = std::numeric_limits<float>::quiet_NaN();
  v[63 * 5 + 62] = std::numeric_limits<float>::quiet_NaN();  // plane (1, 2): last element
  check_maxpool(ctx, rng, special, kK3S2P1, /*values_may_be_nan=*/true);
}

CUDA_TEST_CASE("avgpool2d on CUDA matches the CPU twin (count_include_pad), forward and backward") {
  Context ctx({.device = Device::CUDA});
  Rng rng(13);
  check_avgpool(ctx, rng, {3, 5, 7, 9}, kK3S2P1);
  check_avgpool(ctx, rng, {3, 5, 7, 9}, kK2S2);
  check_avgpool(ctx, rng, {2, 3, 6, 5}, {3, 2, 1, 2, 1, 1});  // non-square, stride 1 rows: heavy overlap
  check_avgpool(ctx, rng, {1, 1, 1, 1}, {1, 1, 1, 1, 0, 0});
  check_avgpool(ctx, rng, {2, 64, 112, 112}, kK3S2P1);
}

CUDA_TEST_CASE("adaptive_avgpool2d on CUDA matches the CPU twin: 7x7, 1x1 (ResNet's avgpool), input smaller") {
  Context ctx({.device = Device::CUDA});
  Rng rng(17);
  check_adaptive(ctx, rng, {3, 5, 7, 9}, 7, 7);  // rows one to one, columns in overlapping bins
  check_adaptive(ctx, rng, {3, 5, 7, 9}, 1, 1);
  check_adaptive(ctx, rng, {2, 3, 13, 11}, 5, 3);
  check_adaptive(ctx, rng, {3, 5, 3, 4}, 7, 7);  // input smaller than output: bins repeat inputs
  check_adaptive(ctx, rng, {1, 1, 1, 1}, 1, 1);
  check_adaptive(ctx, rng, {1, 1, 1, 1}, 2, 3);
  check_adaptive(ctx, rng, {2, 4, 14, 14}, 7, 7);
  check_adaptive(ctx, rng, {256, 512, 7, 7}, 1, 1);  // ResNet18/34 avgpool at batch 256: 6.4M inputs
  check_adaptive(ctx, rng, {2, 3, 40, 40}, 1, 1);    // planes longer than a warp's stride
}
