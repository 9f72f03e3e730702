// The denominators of tl bench: the device's measured matrix-multiply rates (cuBLAS GEMMs in fp32, tf32 and bf16
// on the GPU; our CPU GEMM through the Linear entry point on the CPU) and its device-to-device copy bandwidth.
// Measured here, in the same run, by the same timing method as everything they are compared with.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "apps/bench.h"
#include "apps/bench_timing.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "engine/error.h"
#include "kernels/linear.h"

namespace tl::app::bench {

namespace {

Tensor random_device_floats(Context& ctx, int64_t n, uint64_t seed) {
  Tensor host = Tensor::empty({n});
  Rng rng(seed);
  float* p = host.data<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(2 * rng.uniform() - 1);
  return host.to(ctx, ctx.device());
}

// bf16 is the top half of an fp32 bit pattern (round to nearest even).
uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// A cuBLAS handle of the bench's own on the context's stream, so the engine's handle keeps its math mode.
struct OwnCublas {
  explicit OwnCublas(Context& ctx) {
    TL_CUDA_CHECK(cublasCreate(&handle));
    TL_CUDA_CHECK(cublasSetStream(handle, ctx.cuda().stream));
  }
  ~OwnCublas() { cublasDestroy(handle); }
  cublasHandle_t handle = nullptr;
};

}  // namespace

double Results::rate(const std::string& device, const std::string& precision) const {
  for (const MatrixRate& r : matrix_rates)
    if (r.device == device && r.precision == precision) return r.tflops;
  return 0;
}

std::string describe_cpu(Context& cpu) {
  std::ifstream info("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(info, line)) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return str(model, ", ", cpu.threads(), " threads");
}

std::string describe_gpu(Context& gpu) {
  cudaDeviceProp prop{};
  TL_CUDA_CHECK(cudaGetDeviceProperties(&prop, gpu.cuda().device));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  return str(prop.name, ", ", prop.totalGlobalMem >> 20, " MiB, sm_", prop.major, prop.minor, ", L2 ",
             prop.l2CacheSize >> 20, " MiB, driver ", driver, ", runtime ", runtime, ", cuDNN ", cudnnGetVersion());
}

int64_t gpu_l2_bytes(Context& gpu) {
  int l2 = 0;
  TL_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, gpu.cuda().device));
  return l2 > 0 ? l2 : 50ll << 20;
}

void measure_cpu_rates(Context& cpu, Results& results) {
  // One [n,n] x [n,n]^T product through the same GEMM the CPU convolutions and Linear layers use.
  const int64_t n = 1024;
  Tensor x = random_device_floats(cpu, n * n, 11).reshape({n, n});
  Tensor w = random_device_floats(cpu, n * n, 12).reshape({n, n});
  Tensor y = Tensor::empty({n, n});
  double ms = median(time_calls(cpu, 1, 5, [&](int64_t) { linear_forward(cpu, x, w, nullptr, y); }));
  results.matrix_rates.push_back({"cpu", "fp32", 2.0 * n * n * n / ms / 1e9,
                                  str("linear_forward ", n, "x", n, "x", n, " (the CPU GEMM), median of 5")});
}

double measure_copy_gbs(Context& gpu, int64_t bytes, int warmup, int reps) {
  const int64_t n = (bytes + 3) / 4;
  // Two source/destination pairs, alternated, each far larger than L2.
  std::vector<Tensor> src, dst;
  for (int i = 0; i < 2; ++i) {
    src.push_back(random_device_floats(gpu, n, 20 + i));
    dst.push_back(Tensor::empty(gpu, {n}, DType::F32, Device::CUDA));
  }
  double ms = median(time_calls(gpu, warmup, reps, [&](int64_t call) {
    TL_CUDA_CHECK(cudaMemcpyAsync(dst[call % 2].raw(), src[call % 2].raw(), n * 4, cudaMemcpyDeviceToDevice,
                                  gpu.cuda().stream));
  }));
  return 2.0 * n * 4 / ms / 1e6;  // read + write, GB/s
}

void measure_gpu_rates(Context& gpu, const Options& o, Results& results) {
  // Square GEMMs large enough to run at the device's sustained rate (1.1 TFLOP each).
  const int64_t n = 8192;
  OwnCublas cublas(gpu);
  const float alpha = 1, beta = 0;
  struct Case {
    const char* precision;
    cudaDataType_t type;
    cublasComputeType_t compute;
  };
  const Case cases[] = {{"fp32", CUDA_R_32F, CUBLAS_COMPUTE_32F},
                        {"tf32", CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32},
                        {"bf16", CUDA_R_16BF, CUBLAS_COMPUTE_32F}};
  Tensor a32 = random_device_floats(gpu, n * n, 1), b32 = random_device_floats(gpu, n * n, 2);
  Tensor c32 = Tensor::empty(gpu, {n * n}, DType::F32, Device::CUDA);
  // bf16 matrices live in F32 tensors of half the element count (the engine has no bf16 dtype yet).
  std::vector<uint16_t> host(static_cast<size_t>(n * n));
  Rng rng(3);
  for (auto& v : host) v = to_bf16(static_cast<float>(2 * rng.uniform() - 1));
  Tensor a16 = Tensor::empty(gpu, {n * n / 2}, DType::F32, Device::CUDA);
  Tensor b16 = Tensor::empty(gpu, {n * n / 2}, DType::F32, Device::CUDA);
  Tensor c16 = Tensor::empty(gpu, {n * n / 2}, DType::F32, Device::CUDA);
  TL_CUDA_CHECK(cudaMemcpy(a16.raw(), host.data(), host.size() * 2, cudaMemcpyHostToDevice));
  TL_CUDA_CHECK(cudaMemcpy(b16.raw(), host.data(), host.size() * 2, cudaMemcpyHostToDevice));
  for (const Case& c : cases) {
    const bool half = c.type == CUDA_R_16BF;
    void* a = half ? a16.raw() : a32.raw();
    void* b = half ? b16.raw() : b32.raw();
    void* out = half ? c16.raw() : c32.raw();
    try {
      double ms = median(time_calls(gpu, 3, 10, [&](int64_t) {
        TL_CUDA_CHECK(cublasGemmEx(cublas.handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, c.type, n, b, c.type,
                                   n, &beta, out, c.type, n, c.compute, CUBLAS_GEMM_DEFAULT));
      }));
      double tflops = 2.0 * n * n * n / ms / 1e9;
      results.matrix_rates.push_back({"cuda", c.precision, tflops,
                                      str("cublasGemmEx ", n, "^3, ", c.precision, " inputs/outputs",
                                          half ? " (fp32 accumulation)" : "", ", median of 10")});
      std::fprintf(stderr, "tl bench: %s GEMM: %.1f TFLOP/s\n", c.precision, tflops);
    } catch (const std::exception& e) {
      results.notes.push_back(json::Value(str(c.precision, " GEMM rate not measured: ", e.what())));
    }
  }
  const int64_t copy_bytes = std::max<int64_t>(4 * gpu_l2_bytes(gpu), 256ll << 20);
  double gbs = measure_copy_gbs(gpu, copy_bytes, 3, 20);
  Row copy;
  copy.text("device", "cuda").text("what", "cudaMemcpyAsync device to device").integer("bytes", copy_bytes);
  copy.number("gbs", gbs).text("counted", "read + write");
  results.copy.push_back(copy.done());
  std::fprintf(stderr, "tl bench: device-to-device copy: %.0f GB/s\n", gbs);
  (void)o;
}

}  // namespace tl::app::bench
