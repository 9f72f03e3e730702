#pragma once
// A caching device allocator: blocks freed by tensors go to per-size-class free lists and are
// handed out again without a driver call, so a training loop stops calling cudaMalloc/cudaFree
// after its first iteration. The caching policy lives here and knows nothing of CUDA; the raw
// device calls come in as a RawDeviceMemory, so a CPU test can drive the policy with malloc/free.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/storage.h"

namespace tl {

// The driver underneath the cache.
struct RawDeviceMemory {
  // Returns nullptr when the device is out of memory (and only then); throws tl::Error on any
  // other failure.
  std::function<void*(size_t bytes)> allocate;
  std::function<void(void* ptr)> free;
  // Waits until no queued work can still touch memory about to be freed (may be empty).
  std::function<void()> synchronize;
  // Free and total bytes of the device, for the out-of-memory message (may be empty).
  std::function<void(size_t& free_bytes, size_t& total_bytes)> memory_info;
};

class CachingAllocator : public DeviceAllocator {
 public:
  explicit CachingAllocator(RawDeviceMemory raw);
  ~CachingAllocator() override;  // returns every cached block to the driver
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Throws tl::Error "out of device memory: ..." when the driver has no room even after the
  // cache was emptied.
  void* allocate(size_t bytes) override;
  // Returns the block to the cache at once (see the stream-order note in caching_allocator.cpp).
  void release(void* ptr, size_t bytes) override;
  AllocatorStats stats() const override;
  void reset_peak() override;
  void empty_cache() override;

  // The block size a request of `bytes` gets (the size-class rule):
  //   bytes <= 1 MiB: rounded up to a multiple of 512 B (0 counts as 1);
  //   bytes >  1 MiB: rounded up to a multiple of 2^(floor(log2(bytes)) - 3), i.e. eight classes
  //                   per power of two, so a block wastes less than 1/8 of the request;
  //   bytes >  2^60:  not rounded (no device has that much; the driver call fails and says so).
  // Every class is a multiple of 512 B. Blocks are never split or merged: a request is served only
  // from the free list of its own class, so a loop that repeats the same requests reaches a steady
  // state after one pass.
  static size_t size_class(size_t bytes);

  static constexpr size_t kSmallGranularity = 512;
  static constexpr size_t kSmallLimit = size_t(1) << 20;

 private:
  void* allocate_from_driver(size_t block_bytes);  // counts the call; nullptr when out of memory
  void free_cached_blocks();                        // mutex_ held
  [[noreturn]] void throw_out_of_memory(size_t bytes);

  RawDeviceMemory raw_;
  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;  // class -> cached blocks
  std::unordered_map<void*, size_t> live_blocks_;               // handed out -> class
  AllocatorStats stats_;
};

}  // namespace tl
