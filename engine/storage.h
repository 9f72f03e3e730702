#pragma once
// A block of memory on one device. Tensors share Storage; views keep it alive.
#include <cstddef>
#include <memory>

#include "engine/dtype.h"

namespace tl {

// Hands out device memory. The Context owns one for CUDA; CPU memory needs none.
class DeviceAllocator {
 public:
  virtual ~DeviceAllocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* ptr, size_t bytes) = 0;
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
