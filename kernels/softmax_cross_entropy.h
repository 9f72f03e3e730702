#pragma once
// Softmax cross-entropy, fused and numerically stable, with label smoothing. Entry points validate
// and dispatch on the logits' device; the cpu:: twin is the specification, the cuda:: twin (F32)
// computes the same thing.
#include <cstdint>

#include "engine/tensor.h"

namespace tl {
class Context;

// logits [N,C] (F32/F64), labels I64 [N] on the logits' device with every value in [0,C) (an error
// names the first bad label and its index otherwise; on CUDA it is found after the kernels ran, so a
// dlogits asked for is then left with unspecified contents).
// Label smoothing s in [0,1]: target = (1-s)*onehot + s/C.
// Returns the MEAN loss over the batch, computed as a max-subtracted log-sum-exp in double.
// When dlogits is non-null it is overwritten with d(mean loss)/d(logits) = (softmax - target)/N;
// an undefined *dlogits is allocated like logits, a defined one must match logits exactly.
double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits);
// Row-wise softmax of logits [N,C], stable (max-subtracted). probabilities: same shape, dtype and
// device as logits (allocated when undefined); overwritten.
void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities);

// Throws the error naming `label` at `index` unless it is in [0, logits.size(1)) (both twins use it).
void check_label(int64_t label, int64_t index, const Tensor& logits);

namespace cpu {
// Arguments already validated by the entry points above.
double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits);
void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities);
}  // namespace cpu
namespace cuda {
// F32 logits, dlogits and probabilities; labels I64 on the device. The mean loss comes back with one
// device-to-host copy and one stream sync (the call blocks until the loss is known).
double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits);
void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities);

// Which threads share a row: a warp each (narrow rows) or a block each (wide rows). Automatic picks
// by the number of classes; the others exist so the parity tests run both mappings on every C.
enum class RowMapping { Automatic, WarpPerRow, BlockPerRow };
double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits, RowMapping mapping);
void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities, RowMapping mapping);
}  // namespace cuda
}  // namespace tl
