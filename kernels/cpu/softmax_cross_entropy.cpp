#include "kernels/softmax_cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/parallel.h"
#include "kernels/cpu/dispatch.h"

namespace tl::cpu {

namespace {

// A row's max and log(sum exp(z - max)), in double: log-sum-exp = peak + log_sum. Losses are formed
// from the shifted logits z - peak so a common large offset cancels exactly instead of rounding.
struct RowStats {
  double peak;
  double log_sum;
};

template <class T>
RowStats row_stats(const T* z, int64_t classes) {
  double peak = z[0];
  for (int64_t c = 1; c < classes; ++c) peak = std::max(peak, double(z[c]));
  double sum = 0;
  for (int64_t c = 0; c < classes; ++c) sum += std::exp(double(z[c]) - peak);
  return {peak, std::log(sum)};
}

}  // namespace

double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits) {
  int64_t rows = logits.size(0), classes = logits.size(1);
  const int64_t* y = labels.data<int64_t>();
  double s = label_smoothing;
  double off_target = s / double(classes);          // target of every class
  double on_target = 1.0 - s + off_target;           // target of the labelled class
  std::vector<double> row_loss(rows);
  dispatch_float("softmax_cross_entropy", logits, [&](auto zero) {
    using T = decltype(zero);
    const T* z = logits.data<T>();
    T* dz = dlogits ? dlogits->data<T>() : nullptr;
    parallel_for(ctx, rows, [&](int64_t i) {
      const T* zi = z + i * classes;
      RowStats r = row_stats(zi, classes);
      // loss_i = sum_c target_c * (lse - z_c) = log_sum - (1-s) (z_y - peak) - (s/C) sum_c (z_c - peak),
      // using sum_c target_c = 1.
      double sum_shifted = 0;
      for (int64_t c = 0; c < classes; ++c) sum_shifted += double(zi[c]) - r.peak;
      row_loss[i] = r.log_sum - (1.0 - s) * (double(zi[y[i]]) - r.peak) - off_target * sum_shifted;
      if (dz) {
        T* gi = dz + i * classes;
        for (int64_t c = 0; c < classes; ++c) {
          double p = std::exp(double(zi[c]) - r.peak - r.log_sum);
          double target = c == y[i] ? on_target : off_target;
          gi[c] = T((p - target) / double(rows));
        }
      }
    });
  });
  double total = 0;  // summed serially in row order: the result does not depend on the thread count
  for (double l : row_loss) total += l;
  return total / double(rows);
}

void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities) {
  int64_t rows = logits.size(0), classes = logits.size(1);
  dispatch_float("softmax", logits, [&](auto zero) {
    using T = decltype(zero);
    const T* z = logits.data<T>();
    T* p = probabilities.data<T>();
    parallel_for(ctx, rows, [&](int64_t i) {
      const T* zi = z + i * classes;
      T* pi = p + i * classes;
      RowStats r = row_stats(zi, classes);
      for (int64_t c = 0; c < classes; ++c) pi[c] = T(std::exp(double(zi[c]) - r.peak - r.log_sum));
    });
  });
}

}  // namespace tl::cpu
