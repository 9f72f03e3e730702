#pragma once
// parallel_for over [0, n) with the Context's thread count (OpenMP). The body must not throw
// across threads: exceptions are caught per iteration and the first one is rethrown after the loop.
#include <cstdint>
#include <exception>
#include <mutex>

#include "engine/context.h"

namespace tl {

template <class F>
void parallel_for(Context& ctx, int64_t n, F&& body) {
  if (n <= 0) return;
  int threads = ctx.threads();
  if (threads <= 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  std::exception_ptr failure;
  std::mutex failure_lock;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    try {
      body(i);
    } catch (...) {
      std::lock_guard<std::mutex> hold(failure_lock);
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace tl
