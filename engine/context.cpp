#include "engine/context.h"

#include <omp.h>

#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "engine/error.h"
#include "kernels/cpu/gemm.h"

namespace tl {

int Context::cuda_device_count() {
  // Immutable after the first call: probing again on a driver-less machine is what must not happen.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

Context::Context(ContextOptions options)
    : device_(options.device), threads_(1), tf32_(options.tf32), rng_(options.seed) {
  set_threads(options.threads);
  if (device_ == Device::CUDA) {
    TL_CHECK(cuda_available(), "CUDA device requested but none is available");
    cuda();
  }
}

Context::~Context() = default;

void Context::set_threads(int threads) {
  threads_ = threads > 0 ? threads : omp_get_max_threads();
  cpu::gemm_prepare_threads();
}

CudaState& Context::cuda() {
  if (!cuda_) {
    TL_CHECK(cuda_available(), "no CUDA device: this operation needs one");
    cuda_ = std::make_unique<CudaState>(0);
  }
  return *cuda_;
}

std::shared_ptr<DeviceAllocator> Context::cuda_allocator() { return cuda().allocator; }

void Context::synchronize() {
  if (cuda_) TL_CUDA_CHECK(cudaStreamSynchronize(cuda_->stream));
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda" || name == "gpu") return Device::CUDA;
  if (name == "auto") return Context::cuda_available() ? Device::CUDA : Device::CPU;
  throw Error(str("unknown device '", name, "' (expected cpu, cuda or auto)"));
}

}  // namespace tl
