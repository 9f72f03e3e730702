#include "kernels/cpu/im2col.h"

#include <algorithm>

namespace tl::cpu {

namespace {

// Output positions o in [0, out) whose input index o * stride + offset lies in [0, in): a
// contiguous range [begin, end), so the inner loops carry no bounds test.
struct ValidRange {
  int64_t begin, end;
};

ValidRange valid_outputs(int64_t in, int64_t out, int64_t stride, int64_t offset) {
  int64_t begin = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  int64_t last = in - 1 - offset;  // largest o * stride allowed
  int64_t end = last < 0 ? 0 : std::min(out, last / stride + 1);
  return {std::min(begin, out), std::max(std::min(begin, out), end)};
}

}  // namespace

template <class T>
void im2col(const ConvGeometry& g, const T* image, T* columns) {
  const int64_t sh = g.params.stride_h, sw = g.params.stride_w;
  for (int64_t c = 0; c < g.channels; ++c) {
    const T* plane = image + c * g.height * g.width;
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      ValidRange rows = valid_outputs(g.height, g.out_h, sh, kh - g.params.pad_h);
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        ValidRange cols = valid_outputs(g.width, g.out_w, sw, kw - g.params.pad_w);
        T* out = columns + ((c * g.kernel_h + kh) * g.kernel_w + kw) * g.out_h * g.out_w;
        for (int64_t oh = 0; oh < g.out_h; ++oh) {
          T* out_row = out + oh * g.out_w;
          if (oh < rows.begin || oh >= rows.end) {
            std::fill(out_row, out_row + g.out_w, T(0));
            continue;
          }
          const T* in_row = plane + (oh * sh + kh - g.params.pad_h) * g.width + (kw - g.params.pad_w);
          std::fill(out_row, out_row + cols.begin, T(0));
          if (sw == 1) {
            std::copy(in_row + cols.begin, in_row + cols.end, out_row + cols.begin);
          } else {
            for (int64_t ow = cols.begin; ow < cols.end; ++ow) out_row[ow] = in_row[ow * sw];
          }
          std::fill(out_row + cols.end, out_row + g.out_w, T(0));
        }
      }
    }
  }
}

template <class T>
void col2im(const ConvGeometry& g, const T* columns, T* image) {
  const int64_t sh = g.params.stride_h, sw = g.params.stride_w;
  std::fill(image, image + g.channels * g.height * g.width, T(0));
  for (int64_t c = 0; c < g.channels; ++c) {
    T* plane = image + c * g.height * g.width;
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      ValidRange rows = valid_outputs(g.height, g.out_h, sh, kh - g.params.pad_h);
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        ValidRange cols = valid_outputs(g.width, g.out_w, sw, kw - g.params.pad_w);
        const T* in = columns + ((c * g.kernel_h + kh) * g.kernel_w + kw) * g.out_h * g.out_w;
        for (int64_t oh = rows.begin; oh < rows.end; ++oh) {
          const T* in_row = in + oh * g.out_w;
          T* out_row = plane + (oh * sh + kh - g.params.pad_h) * g.width + (kw - g.params.pad_w);
          for (int64_t ow = cols.begin; ow < cols.end; ++ow) out_row[ow * sw] += in_row[ow];
        }
      }
    }
  }
}

template void im2col<float>(const ConvGeometry&, const float*, float*);
template void im2col<double>(const ConvGeometry&, const double*, double*);
template void col2im<float>(const ConvGeometry&, const float*, float*);
template void col2im<double>(const ConvGeometry&, const double*, double*);

}  // namespace tl::cpu
