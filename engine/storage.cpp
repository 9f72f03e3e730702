#include "engine/storage.h"

#include <cstdlib>
#include <new>

#include "engine/error.h"

namespace tl {

namespace {
// 64-byte alignment keeps rows of SIMD loads and OpenBLAS happy.
constexpr size_t kCpuAlignment = 64;
}

Storage::Storage(size_t bytes_, Device device_, std::shared_ptr<DeviceAllocator> allocator_)
    : bytes(bytes_), device(device_), allocator(std::move(allocator_)) {
  if (bytes == 0) return;
  if (device == Device::CPU) {
    size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    data = std::aligned_alloc(kCpuAlignment, rounded);
    TL_CHECK(data != nullptr, "out of host memory: asked for ", bytes, " bytes");
  } else {
    TL_CHECK(allocator != nullptr, "device storage needs an allocator (use a CUDA Context)");
    data = allocator->allocate(bytes);
  }
}

Storage::~Storage() {
  if (data == nullptr) return;
  if (device == Device::CPU) std::free(data);
  else allocator->release(data, bytes);
}

}  // namespace tl
