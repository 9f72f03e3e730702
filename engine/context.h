#pragma once
// The one explicit place for execution state: device, CUDA stream and library handles (created
// lazily), the device allocator, the RNG and the CPU thread count. Passed to every op; there are
// no hidden globals.
#include <cstdint>
#include <memory>
#include <string>

#include "engine/dtype.h"
#include "engine/rng.h"
#include "engine/storage.h"

namespace tl {

struct CudaState;

struct ContextOptions {
  Device device = Device::CPU;
  uint64_t seed = 0;
  int threads = 0;  // 0: all hardware threads
  bool tf32 = true;  // TF32 tensor-core math for convolutions, as PyTorch does by default
};

class Context {
 public:
  explicit Context(ContextOptions options = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return device_; }
  int threads() const { return threads_; }
  void set_threads(int threads);
  bool tf32() const { return tf32_; }
  void set_tf32(bool on) { tf32_ = on; }
  Rng& rng() { return rng_; }

  // Number of CUDA devices; 0 when there is no driver. Probed once per process and never again
  // after a failure (the driver-less machines answer error 35 rather than a count of 0).
  static int cuda_device_count();
  static bool cuda_available() { return cuda_device_count() > 0; }

  // The CUDA side, created on first use; throws when no device exists.
  CudaState& cuda();
  std::shared_ptr<DeviceAllocator> cuda_allocator();
  // Waits for all work queued on the context's stream (no-op on the CPU).
  void synchronize();

 private:
  Device device_;
  int threads_;
  bool tf32_;
  Rng rng_;
  std::unique_ptr<CudaState> cuda_;
};

// "cpu", "cuda" or "auto" (CUDA when a device exists, else CPU).
Device parse_device(const std::string& name);

}  // namespace tl
