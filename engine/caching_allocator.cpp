#include "engine/caching_allocator.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <string>

#include "engine/error.h"

// Why a block can be handed out again the moment a tensor lets go of it, without waiting for the
// GPU: every kernel, cuBLAS/cuDNN call and copy that tl queues for a Context runs on that Context's
// single stream, and a stream runs its work in the order it was queued. Whatever work used a block
// was queued before release() returned; the block's next owner can only queue work after allocate()
// returned it, so behind all of that work. The new owner's first access therefore runs after the old
// owner's last one, though the host never waited. Two things would break this, and tl does neither:
// using a block on a second stream (that code would have to make the streams wait on each other with
// an event) and host reads of device memory outside the stream (cuda_copy synchronises the stream
// before the host touches a result). Handing a block back to the driver is different: cudaFree of
// memory that queued work may still use is undefined, so free_cached_blocks() synchronises first.

namespace tl {

namespace {
constexpr size_t kNoRoundingAbove = size_t(1) << 60;

std::string mib(size_t bytes) {
  char text[64];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / double(1 << 20));
  return text;
}
}  // namespace

size_t CachingAllocator::size_class(size_t bytes) {
  if (bytes > kNoRoundingAbove) return bytes;
  if (bytes <= kSmallLimit) {
    size_t units = (std::max<size_t>(bytes, 1) + kSmallGranularity - 1) / kSmallGranularity;
    return units * kSmallGranularity;
  }
  // bytes > 1 MiB, so the step is at least 2^17 (a multiple of 512).
  size_t step = std::bit_floor(bytes) >> 3;
  return (bytes + step - 1) / step * step;
}

CachingAllocator::CachingAllocator(RawDeviceMemory raw) : raw_(std::move(raw)) {
  TL_CHECK(raw_.allocate && raw_.free, "CachingAllocator needs raw allocate and free functions");
}

CachingAllocator::~CachingAllocator() {
  // Destructors must not throw: a failed synchronise or free at shutdown is not worth reporting.
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    free_cached_blocks();
  } catch (...) {
  }
}

void* CachingAllocator::allocate_from_driver(size_t block_bytes) {
  ++stats_.device_malloc_calls;
  return raw_.allocate(block_bytes);
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t block = size_class(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = nullptr;
  auto cached = free_blocks_.find(block);
  if (cached != free_blocks_.end() && !cached->second.empty()) {
    ptr = cached->second.back();
    cached->second.pop_back();
  } else {
    ptr = allocate_from_driver(block);
    if (ptr == nullptr) {
      // The room the driver lacks may sit in cached blocks of other classes: return them, try once more.
      free_cached_blocks();
      ptr = allocate_from_driver(block);
      if (ptr == nullptr) throw_out_of_memory(bytes);
    }
    stats_.bytes_reserved += block;
  }
  live_blocks_.emplace(ptr, block);
  stats_.bytes_in_use += block;
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  return ptr;
}

void CachingAllocator::release(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto live = live_blocks_.find(ptr);
  TL_CHECK(live != live_blocks_.end(), "CachingAllocator::release: block ", ptr, " (", bytes,
           " bytes) was not allocated here or was already released");
  const size_t block = live->second;
  live_blocks_.erase(live);
  stats_.bytes_in_use -= block;
  // Reusable at once: see the stream-order note at the top of this file.
  free_blocks_[block].push_back(ptr);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  free_cached_blocks();
}

void CachingAllocator::free_cached_blocks() {
  bool any = false;
  for (const auto& [block, ptrs] : free_blocks_) any = any || !ptrs.empty();
  if (!any) return;
  // Work queued before a block was released may still be running: wait for it before freeing.
  if (raw_.synchronize) raw_.synchronize();
  for (auto& [block, ptrs] : free_blocks_) {
    for (void* ptr : ptrs) {
      raw_.free(ptr);
      ++stats_.device_free_calls;
      stats_.bytes_reserved -= block;
    }
  }
  free_blocks_.clear();
}

void CachingAllocator::throw_out_of_memory(size_t bytes) {
  size_t free_bytes = 0, total_bytes = 0;
  bool known = false;
  if (raw_.memory_info) {
    try {
      raw_.memory_info(free_bytes, total_bytes);
      known = true;
    } catch (...) {
    }
  }
  std::string device = known ? str(mib(free_bytes), " of ", mib(total_bytes), " free")
                             : std::string("free device memory unknown");
  throw Error(str("out of device memory: asked for ", bytes, " bytes (", mib(bytes), "), ", device, ", ",
                  mib(stats_.bytes_reserved), " reserved by tl (lower --batch-size)"));
}

}  // namespace tl
