#pragma once
// Launch geometry shared by our elementwise CUDA kernels (grid-stride loops, so any size works).
#include <cstdint>

namespace tl::cuda {

constexpr int kThreadsPerBlock = 256;

inline unsigned grid_for(int64_t n, int threads = kThreadsPerBlock) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  // Grid-stride loops cover the rest; 2^16 blocks saturate any current GPU.
  return static_cast<unsigned>(blocks > 65536 ? 65536 : blocks);
}

}  // namespace tl::cuda
