#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/caching_allocator.h"
#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "engine/host_upload.h"
#include "support/test_util.h"

using namespace tl;

namespace {
constexpr size_t kMiB = size_t(1) << 20;

// Bytes the caching allocator holds for a tensor of this shape and dtype.
size_t block_bytes(const Shape& shape, DType dtype) {
  return CachingAllocator::size_class(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype));
}

// The test's own account of what should be in use, to compare with the allocator's statistics.
struct Ledger {
  size_t in_use = 0;
  size_t peak = 0;
  Tensor make(Context& ctx, const Shape& shape, DType dtype = DType::F32) {
    in_use += block_bytes(shape, dtype);
    peak = std::max(peak, in_use);
    return Tensor::empty(ctx, shape, dtype, Device::CUDA);
  }
  void drop(Tensor& t) {
    in_use -= block_bytes(t.shape(), t.dtype());
    t = Tensor();
  }
};

// Every byte random (for F32 that includes NaN patterns: the round trip must keep bits, not values).
Tensor random_bytes(Rng& rng, const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* bytes = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); i += 8) {
    uint64_t word = rng.next_u64();
    std::memcpy(bytes + i, &word, std::min<size_t>(8, t.nbytes() - i));
  }
  return t;
}

bool all_equal(const Tensor& host, double value) {
  for (double v : host.to_vector())
    if (v != value) return false;
  return true;
}
}  // namespace

CUDA_TEST_CASE("caching allocator: a training-like loop calls cudaMalloc only in its first iteration") {
  Context ctx({.device = Device::CUDA});
  std::shared_ptr<DeviceAllocator> allocator = ctx.cuda_allocator();
  const int64_t batch = 8;
  // ResNet-50-like activations at batch 8, kept from forward to backward.
  const std::vector<Shape> activations = {{batch, 64, 112, 112}, {batch, 64, 56, 56},  {batch, 256, 56, 56},
                                          {batch, 512, 28, 28},  {batch, 1024, 14, 14}, {batch, 2048, 7, 7},
                                          {batch, 2048},         {batch, 1000}};
  // Parameters and their gradients live across iterations.
  Ledger ledger;
  std::vector<Tensor> parameters;
  for (const Shape& shape : std::vector<Shape>{{64, 3, 7, 7}, {64}, {256, 64, 1, 1}, {2048, 512, 3, 3}, {1000, 2048}, {1000}})
    for (int copy = 0; copy < 2; ++copy) parameters.push_back(ledger.make(ctx, shape));
  allocator->reset_peak();
  const AllocatorStats before = allocator->stats();
  CHECK(before.bytes_in_use == ledger.in_use);
  const size_t persistent = ledger.in_use;
  ledger.peak = ledger.in_use;

  AllocatorStats after_first;
  for (int iteration = 0; iteration < 1000; ++iteration) {
    Tensor pixels = ledger.make(ctx, {batch, 3, 224, 224}, DType::U8);
    Tensor labels = ledger.make(ctx, {batch}, DType::I64);
    Tensor input = ledger.make(ctx, {batch, 3, 224, 224});
    input.fill(ctx, 0.5);
    ledger.drop(pixels);
    std::vector<Tensor> saved;
    for (const Shape& shape : activations) {
      Tensor temporary = ledger.make(ctx, shape);  // e.g. a pre-activation, freed within the layer
      saved.push_back(ledger.make(ctx, shape));
      ledger.drop(temporary);
    }
    Tensor loss = ledger.make(ctx, {1});

    // Stream-ordered reuse: `source` is freed while the copy out of it may still be queued; its block
    // goes straight to `overwrite`, whose fill is queued after the copy, so `copy` must hold `value`.
    const double value = iteration % 997;
    Tensor source = ledger.make(ctx, {batch, 64, 56, 56});
    source.fill(ctx, value);
    Tensor copy = ledger.make(ctx, {batch, 64, 56, 56});
    copy.copy_from(ctx, source);
    void* freed = source.raw();
    ledger.drop(source);
    Tensor overwrite = ledger.make(ctx, {batch, 64, 56, 56});
    CHECK(overwrite.raw() == freed);
    overwrite.fill(ctx, -1.0);
    if (iteration % 100 == 0) CHECK(all_equal(test::to_host(ctx, copy), value));

    for (size_t i = saved.size(); i-- > 0;) {  // backward: gradients in, activations out
      Tensor dy = ledger.make(ctx, saved[i].shape());
      ledger.drop(saved[i]);
      ledger.drop(dy);
    }
    ledger.drop(copy);
    ledger.drop(overwrite);
    ledger.drop(loss);
    ledger.drop(input);
    ledger.drop(labels);
    REQUIRE(ledger.in_use == persistent);
    REQUIRE(allocator->stats().bytes_in_use == persistent);
    if (iteration == 0) after_first = allocator->stats();
  }
  ctx.synchronize();
  const AllocatorStats after = allocator->stats();
  CHECK(after_first.device_malloc_calls > before.device_malloc_calls);
  CHECK(after.device_malloc_calls == after_first.device_malloc_calls);
  CHECK(after.device_free_calls == before.device_free_calls);
  CHECK(after.peak_bytes_in_use == ledger.peak);
  CHECK(after.bytes_reserved >= after.peak_bytes_in_use);
}

CUDA_TEST_CASE("caching allocator: empty_cache gives cached blocks back to the driver") {
  Context ctx({.device = Device::CUDA});
  std::shared_ptr<DeviceAllocator> allocator = ctx.cuda_allocator();
  Tensor kept = Tensor::empty(ctx, {3 * 1024 * 1024 + 5}, DType::F32, Device::CUDA);
  { Tensor dropped = Tensor::empty(ctx, {777}, DType::F32, Device::CUDA); }
  AllocatorStats before = allocator->stats();
  CHECK(before.bytes_reserved == before.bytes_in_use + CachingAllocator::size_class(777 * 4));
  allocator->empty_cache();
  AllocatorStats after = allocator->stats();
  CHECK(after.bytes_reserved == after.bytes_in_use);
  CHECK(after.device_free_calls == before.device_free_calls + 1);
  kept.fill(ctx, 1.25);
  CHECK(all_equal(test::to_host(ctx, kept), 1.25));
}

CUDA_TEST_CASE("the cuDNN workspace grows to the largest request and stays usable") {
  Context ctx({.device = Device::CUDA});
  CudaState& cuda = ctx.cuda();
  const size_t in_use_before = cuda.allocator->stats().bytes_in_use;
  void* small = cuda.workspace(1000);
  REQUIRE(small != nullptr);
  CHECK(cuda.workspace(10) == small);
  CHECK(cuda.workspace(1000) == small);
  CHECK(cuda.allocator->stats().bytes_in_use == in_use_before + CachingAllocator::size_class(1000));
  const size_t large_bytes = 48 * kMiB + 3;
  void* large = cuda.workspace(large_bytes);
  REQUIRE(large != nullptr);
  CHECK(cuda.workspace(kMiB) == large);
  // The smaller buffer went back to the cache: only the large one is in use.
  CHECK(cuda.allocator->stats().bytes_in_use == in_use_before + CachingAllocator::size_class(large_bytes));
  TL_CUDA_CHECK(cudaMemsetAsync(large, 0x5a, large_bytes, cuda.stream));
  std::vector<uint8_t> tail(4096);
  TL_CUDA_CHECK(cudaMemcpyAsync(tail.data(), static_cast<uint8_t*>(large) + large_bytes - tail.size(), tail.size(),
                                cudaMemcpyDeviceToHost, cuda.stream));
  TL_CUDA_CHECK(cudaStreamSynchronize(cuda.stream));
  CHECK(std::all_of(tail.begin(), tail.end(), [](uint8_t b) { return b == 0x5a; }));
}

CUDA_TEST_CASE("upload_async round trip is bit-identical for F32, I64 and U8, from 1 to over 8M elements") {
  Context ctx({.device = Device::CUDA});
  Rng rng(17);
  for (DType dtype : {DType::F32, DType::I64, DType::U8}) {
    // 8M+17 F32 is just over one 32 MiB staging piece; 8M+17 I64 is three pieces.
    for (const Shape& shape : std::vector<Shape>{{1}, {1023}, {2, 3, 5, 7}, {8 * 1024 * 1024 + 17}, {0, 3}}) {
      INFO(dtype_name(dtype), " ", shape_str(shape));
      Tensor host = random_bytes(rng, shape, dtype);
      Tensor device = upload_async(ctx, host);
      CHECK(device.is_cuda());
      CHECK(device.dtype() == dtype);
      CHECK(device.shape() == shape);
      CHECK(test::bit_identical(test::to_host(ctx, device), host));
    }
  }
  // A U8 image batch of 40 MiB + 1 byte: two pieces, the second a single byte.
  Tensor images = random_bytes(rng, {int64_t(40 * kMiB + 1)}, DType::U8);
  CHECK(test::bit_identical(test::to_host(ctx, upload_async(ctx, images)), images));
}

CUDA_TEST_CASE("upload_async: the host tensor may be overwritten as soon as the call returns") {
  Context ctx({.device = Device::CUDA});
  Rng rng(23);
  // Consecutive batches through one reused host tensor, none synchronised until the end: each staging
  // buffer is refilled only after the device copy out of it finished.
  for (int64_t numel : {int64_t(1000), int64_t(5 * 1024 * 1024 + 3), int64_t(20 * 1024 * 1024 + 1)}) {
    INFO("numel ", numel);
    Tensor host = Tensor::empty({numel}, DType::F32);
    std::vector<Tensor> expected, uploaded;
    for (int batch = 0; batch < 6; ++batch) {
      Tensor fresh = random_bytes(rng, {numel}, DType::F32);
      std::memcpy(host.raw(), fresh.raw(), host.nbytes());
      uploaded.push_back(upload_async(ctx, host));
      expected.push_back(fresh);
    }
    std::memset(host.raw(), 0xff, host.nbytes());
    for (size_t i = 0; i < uploaded.size(); ++i) CHECK(test::bit_identical(test::to_host(ctx, uploaded[i]), expected[i]));
  }
}

CUDA_TEST_CASE("upload_async copies a view from its offset and rejects a device tensor") {
  Context ctx({.device = Device::CUDA});
  Rng rng(29);
  Tensor rows = random_bytes(rng, {10, 999}, DType::F32);
  Tensor view = rows.slice(3, 7);
  Tensor device = upload_async(ctx, view);
  CHECK((device.shape() == Shape{4, 999}));
  CHECK(test::bit_identical(test::to_host(ctx, device), view.clone()));
  CHECK_THROWS_AS(upload_async(ctx, device), Error);
}

CUDA_TEST_CASE("an absurd device allocation throws a tl::Error naming the bytes; the allocator still works after") {
  Context ctx({.device = Device::CUDA});
  std::shared_ptr<DeviceAllocator> allocator = ctx.cuda_allocator();
  Tensor kept = Tensor::empty(ctx, {1000}, DType::F32, Device::CUDA);
  kept.fill(ctx, 3.0);
  { Tensor cached = Tensor::empty(ctx, {int64_t(kMiB)}, DType::F32, Device::CUDA); }  // for the retry to return
  const AllocatorStats before = allocator->stats();
  std::string message;
  try {
    Tensor absurd = Tensor::empty(ctx, {int64_t(1) << 48}, DType::F32, Device::CUDA);  // 1 PiB
  } catch (const Error& e) {
    message = e.what();
  }
  INFO(message);
  CHECK(message.find("out of device memory: asked for 1125899906842624 bytes") != std::string::npos);
  CHECK(message.find("lower --batch-size") != std::string::npos);
  const AllocatorStats after = allocator->stats();
  CHECK(after.device_malloc_calls == before.device_malloc_calls + 2);  // one try, one retry
  CHECK(after.device_free_calls == before.device_free_calls + 1);      // the cache was emptied in between
  CHECK(after.bytes_in_use == before.bytes_in_use);

  // Still works: new memory, a kernel launch (its launch check would report a leftover error), an upload.
  Tensor fresh = Tensor::empty(ctx, {4097}, DType::F32, Device::CUDA);
  fresh.fill(ctx, 2.5);
  CHECK(all_equal(test::to_host(ctx, fresh), 2.5));
  CHECK(all_equal(test::to_host(ctx, kept), 3.0));
  Rng rng(31);
  Tensor host = random_bytes(rng, {12345}, DType::I64);
  CHECK(test::bit_identical(test::to_host(ctx, upload_async(ctx, host)), host));
}
