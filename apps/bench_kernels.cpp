// tl bench --kernels: achieved GB/s of our memory-bound CUDA kernels on ResNet18-sized tensors, next to the measured
// device-to-device copy bandwidth and to cuDNN's equivalent call where there is one.
//
// Method: GB/s = the bytes the op must move at least (each input read once, each output written once) over the
// median time of `kernel_reps` calls, each bracketed by CUDA events, after `kernel_warmup` calls. The calls rotate
// through copies of the op's tensors that together exceed the L2 cache three times over, so no call starts with its
// inputs in L2. The same sets, rotation and count serve the cuDNN call.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "apps/bench.h"
#include "apps/bench_kernels.h"
#include "apps/bench_timing.h"
#include "engine/cuda_state.h"
#include "engine/error.h"

namespace tl::app::bench {

namespace {

int64_t set_bytes(const TensorSet& set) {
  int64_t total = 0;
  for (const Tensor& t : set) total += static_cast<int64_t>(t.nbytes());
  return total;
}

// Median ms of `call` over the rotating sets, after preparing each set.
double time_on_sets(Context& gpu, std::vector<TensorSet>& sets, const SetCall& prepare, const SetCall& call,
                    int warmup, int reps) {
  if (prepare)
    for (TensorSet& s : sets) prepare(gpu, s);
  return median(time_calls(gpu, warmup, reps, [&](int64_t i) { call(gpu, sets[i % sets.size()]); }));
}

}  // namespace

void run_kernels(Context& gpu, const Options& o, Results& results) {
  double copy_gbs = 0;
  for (const json::Value& row : results.copy)
    if (const json::Value* v = row.find("gbs"); v && v->is_number()) copy_gbs = v->as_number();
  if (copy_gbs <= 0) {
    const int64_t bytes = std::max<int64_t>(4 * gpu_l2_bytes(gpu), 256ll << 20);
    copy_gbs = measure_copy_gbs(gpu, bytes, 3, 20);
    Row copy;
    copy.text("device", "cuda").text("what", "cudaMemcpyAsync device to device").integer("bytes", bytes);
    copy.number("gbs", copy_gbs).text("counted", "read + write");
    results.copy.push_back(copy.done());
  }
  const int64_t l2 = gpu_l2_bytes(gpu);
  for (KernelCase& c : kernel_cases(o.kernel_batch)) {
    Row row;
    row.text("name", c.name).text("shape", c.shape).integer("bytes", c.bytes);
    try {
      std::vector<TensorSet> sets;
      sets.push_back(c.make(gpu));
      const int64_t one = std::max<int64_t>(set_bytes(sets[0]), 1);
      // Enough sets to exceed L2 three times over, at least two, at most 256 (the small cases).
      const int64_t count = std::clamp<int64_t>((3 * l2 + one - 1) / one, 2, 256);
      while (static_cast<int64_t>(sets.size()) < count) {
        TensorSet copy;
        for (const Tensor& t : sets[0]) copy.push_back(t.clone(gpu));
        sets.push_back(std::move(copy));
      }
      row.integer("sets", count);
      try {
        const double ms = time_on_sets(gpu, sets, c.prepare, c.ours, o.kernel_warmup, o.kernel_reps);
        const double gbs = c.bytes / ms / 1e6;
        row.number("ms", ms).number("gbs", gbs).number("fraction_of_copy", copy_gbs > 0 ? gbs / copy_gbs : NAN);
        std::fprintf(stderr, "tl bench: %s: %.3f ms, %.0f GB/s\n", c.name.c_str(), ms, gbs);
      } catch (const std::exception& e) {
        row.text("error", e.what());
        std::fprintf(stderr, "tl bench: %s: error: %s\n", c.name.c_str(), e.what());
      }
      if (c.reference_call) {
        row.text("reference", c.reference).integer("reference_bytes", c.reference_bytes);
        try {
          const double ms =
              time_on_sets(gpu, sets, c.prepare_reference, c.reference_call, o.kernel_warmup, o.kernel_reps);
          row.number("reference_ms", ms).number("reference_gbs", c.reference_bytes / ms / 1e6);
        } catch (const std::exception& e) {
          row.text("reference_error", e.what());
        }
      }
    } catch (const std::exception& e) {
      row.text("error", e.what());
      std::fprintf(stderr, "tl bench: %s: error: %s\n", c.name.c_str(), e.what());
    }
    results.kernels.push_back(row.done());
    results.saved();
    try {
      gpu.synchronize();
      gpu.cuda().allocator->empty_cache();  // the next case's sets may be larger
    } catch (const std::exception&) {
      // a failed device: every later case reports its own error
    }
  }
}

}  // namespace tl::app::bench
