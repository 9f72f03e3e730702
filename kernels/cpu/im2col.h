#pragma once
// im2col / col2im for one NCHW image, so a convolution becomes one GEMM per image.
// The column matrix is [C*KH*KW, OH*OW] row-major: row (c, kh, kw) holds, for every output
// position, the input pixel that kernel tap multiplies (0 where it falls in the padding).
#include <cstdint>

#include "kernels/conv2d.h"

namespace tl::cpu {

struct ConvGeometry {
  int64_t channels, height, width;  // one input image
  int64_t kernel_h, kernel_w;
  int64_t out_h, out_w;
  Conv2dParams params;

  int64_t column_rows() const { return channels * kernel_h * kernel_w; }
  int64_t column_cols() const { return out_h * out_w; }
  // 1x1, stride 1, no padding: the image itself is the column matrix.
  bool is_pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && params.stride_h == 1 && params.stride_w == 1 && params.pad_h == 0 &&
           params.pad_w == 0;
  }
};

// columns [column_rows, column_cols] = patches of image [C, H, W]; every element written.
template <class T>
void im2col(const ConvGeometry& g, const T* image, T* columns);

// image [C, H, W] = sum of every column entry back onto the pixel it came from (overwritten).
template <class T>
void col2im(const ConvGeometry& g, const T* columns, T* image);

}  // namespace tl::cpu
