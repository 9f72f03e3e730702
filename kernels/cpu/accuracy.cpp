#include "kernels/accuracy.h"

#include <cmath>

#include "kernels/cpu/dispatch.h"

namespace tl::cpu {

namespace {

// The first maximum of row[0, classes), NaN above every number: once the best is a NaN nothing
// beats it, so the first NaN wins.
template <class T>
int64_t row_argmax(const T* row, int64_t classes) {
  int64_t best = 0;
  for (int64_t j = 1; j < classes && !std::isnan(row[best]); ++j)
    if (row[j] > row[best] || std::isnan(row[j])) best = j;
  return best;
}

}  // namespace

// Serial: an evaluation batch is a few hundred rows of at most a thousand classes, well under a
// millisecond of comparisons.
void argmax_rows(Context&, const Tensor& logits, Tensor& indices) {
  dispatch_float("argmax_rows", logits, [&](auto zero) {
    using T = decltype(zero);
    const T* z = logits.data<T>();
    int64_t* out = indices.data<int64_t>();
    int64_t rows = logits.size(0), classes = logits.size(1);
    for (int64_t i = 0; i < rows; ++i) out[i] = row_argmax(z + i * classes, classes);
  });
}

int64_t count_correct(Context&, const Tensor& logits, const Tensor& labels) {
  int64_t correct = 0;
  dispatch_float("count_correct", logits, [&](auto zero) {
    using T = decltype(zero);
    const T* z = logits.data<T>();
    const int64_t* y = labels.data<int64_t>();
    int64_t rows = logits.size(0), classes = logits.size(1);
    for (int64_t i = 0; i < rows; ++i) correct += row_argmax(z + i * classes, classes) == y[i];
  });
  return correct;
}

}  // namespace tl::cpu
