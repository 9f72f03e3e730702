#include "apps/bench_timing.h"

#include <algorithm>
#include <cmath>

#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "engine/error.h"

namespace tl::app::bench {

IntervalTimer::IntervalTimer(Context& ctx) : ctx_(ctx), cuda_(ctx.device() == Device::CUDA) {}

IntervalTimer::~IntervalTimer() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);  // no throwing from a destructor
}

void IntervalTimer::begin() {
  if (!cuda_) {
    points_.push_back(std::chrono::steady_clock::now());
    ++count_;
    return;
  }
  while (events_.size() < 2 * (count_ + 1)) {
    cudaEvent_t e = nullptr;
    TL_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  TL_CUDA_CHECK(cudaEventRecord(events_[2 * count_], ctx_.cuda().stream));
  ++count_;
}

void IntervalTimer::end() {
  TL_CHECK(count_ > 0, "IntervalTimer: end() without begin()");
  if (!cuda_) {
    TL_CHECK(points_.size() == 2 * count_ - 1, "IntervalTimer: end() twice");
    points_.push_back(std::chrono::steady_clock::now());
    return;
  }
  TL_CUDA_CHECK(cudaEventRecord(events_[2 * count_ - 1], ctx_.cuda().stream));
}

std::vector<double> IntervalTimer::milliseconds() {
  std::vector<double> out;
  out.reserve(count_);
  if (!cuda_) {
    TL_CHECK(points_.size() == 2 * count_, "IntervalTimer: an interval was begun and not ended");
    for (size_t i = 0; i < count_; ++i)
      out.push_back(std::chrono::duration<double, std::milli>(points_[2 * i + 1] - points_[2 * i]).count());
    return out;
  }
  if (count_ == 0) return out;
  TL_CUDA_CHECK(cudaEventSynchronize(events_[2 * count_ - 1]));
  for (size_t i = 0; i < count_; ++i) {
    float ms = 0;
    TL_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]));
    out.push_back(ms);
  }
  return out;
}

void IntervalTimer::clear() {
  count_ = 0;
  points_.clear();
}

std::vector<double> time_calls(Context& ctx, int warmup, int reps, const std::function<void(int64_t)>& work) {
  TL_CHECK(warmup >= 0 && reps >= 1, "bench: need warm-up >= 0 and repetitions >= 1, got ", warmup, " and ", reps);
  int64_t call = 0;
  for (int i = 0; i < warmup; ++i) work(call++);
  ctx.synchronize();
  IntervalTimer timer(ctx);
  for (int i = 0; i < reps; ++i) {
    timer.begin();
    work(call++);
    timer.end();
  }
  return timer.milliseconds();
}

double median(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace tl::app::bench
