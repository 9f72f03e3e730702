#pragma once
// How tl bench times things, the same way for every section: warm-up calls first, then many timed calls, and the
// median of the per-call times. On a CUDA context each call is bracketed by two CUDA events on the context's stream
// (GPU time, no host synchronisation between calls); on the CPU by the steady clock.
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include <cuda_runtime.h>

#include "engine/context.h"

namespace tl::app::bench {

// Intervals on the context's device, read back once at the end.
class IntervalTimer {
 public:
  explicit IntervalTimer(Context& ctx);
  ~IntervalTimer();
  IntervalTimer(const IntervalTimer&) = delete;
  IntervalTimer& operator=(const IntervalTimer&) = delete;

  void begin();
  void end();
  // Every interval since construction or clear(), in order, in milliseconds; waits for the device.
  std::vector<double> milliseconds();
  void clear();

 private:
  Context& ctx_;
  bool cuda_;
  size_t count_ = 0;  // intervals begun
  std::vector<cudaEvent_t> events_;  // 2 per interval, reused after clear()
  std::vector<std::chrono::steady_clock::time_point> points_;
};

// Calls work(i) for i = 0 .. warmup + reps - 1 and returns the times of the last `reps` calls in ms.
std::vector<double> time_calls(Context& ctx, int warmup, int reps, const std::function<void(int64_t)>& work);

// The median (mean of the middle two for an even count); NaN for none.
double median(std::vector<double> values);

}  // namespace tl::app::bench
