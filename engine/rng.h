#pragma once
// Counter-based random numbers: value i of stream `seed` is a pure function of (seed, i), so the
// CPU and CUDA twins of a random op (dropout) draw identical numbers and runs are reproducible.
#include <cstdint>

#ifdef __CUDACC__
#define TL_HOST_DEVICE __host__ __device__
#else
#define TL_HOST_DEVICE
#endif

namespace tl {

// splitmix64 finaliser over seed and index: well mixed, cheap, stateless.
TL_HOST_DEVICE inline uint64_t hash_u64(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 random bits, the precision of a float.
TL_HOST_DEVICE inline float uniform_from_hash(uint64_t h) {
  return static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
}

// The Context's generator: hands out numbers and fresh seeds for kernels, one stream per seed.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : seed_(seed) {}
  void reseed(uint64_t seed) { seed_ = seed; counter_ = 0; }
  uint64_t seed() const { return seed_; }
  uint64_t next_u64() { return hash_u64(seed_, counter_++); }
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  double normal();  // Box-Muller
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next_u64() % n; }

 private:
  uint64_t seed_ = 0;
  uint64_t counter_ = 0;
};

}  // namespace tl
