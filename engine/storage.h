#pragma once
// A block of memory on one device. Tensors share Storage; views keep it alive.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/dtype.h"

namespace tl {

// What an allocator has done, for the benchmarks and the allocator test.
struct AllocatorStats {
  size_t bytes_in_use = 0;      // handed out and not yet released
  size_t peak_bytes_in_use = 0; // high-water mark of bytes_in_use since the last reset_peak()
  size_t bytes_reserved = 0;    // obtained from the driver (in use + cached)
  int64_t device_malloc_calls = 0;  // cudaMalloc calls so far
  int64_t device_free_calls = 0;    // cudaFree calls so far
};

// Hands out device memory. The Context owns one for CUDA; CPU memory needs none.
class DeviceAllocator {
 public:
  virtual ~DeviceAllocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* ptr, size_t bytes) = 0;
  virtual AllocatorStats stats() const { return {}; }
  virtual void reset_peak() {}
  // Returns cached, unused blocks to the driver (a no-op for allocators that cache nothing).
  virtual void empty_cache() {}
};

struct Storage {
  // CPU storage when allocator is null; device storage from the allocator otherwise.
  Storage(size_t bytes, Device device, std::shared_ptr<DeviceAllocator> allocator);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  std::shared_ptr<DeviceAllocator> allocator;
};

}  // namespace tl
