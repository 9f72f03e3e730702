#include <doctest/doctest.h>

#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/caching_allocator.h"
#include "engine/error.h"

using namespace tl;

namespace {
constexpr size_t kMiB = size_t(1) << 20;

// A pretend device over malloc/free with a capacity, counting what the allocator asks of it.
struct FakeDevice {
  size_t capacity = 0;
  size_t used = 0;
  int64_t allocate_calls = 0;
  int64_t free_calls = 0;
  int64_t synchronize_calls = 0;
  std::unordered_map<void*, size_t> blocks;
};

RawDeviceMemory raw_memory(const std::shared_ptr<FakeDevice>& device) {
  RawDeviceMemory raw;
  raw.allocate = [device](size_t bytes) -> void* {
    ++device->allocate_calls;
    if (device->used + bytes > device->capacity) return nullptr;
    void* ptr = std::malloc(bytes);
    REQUIRE(ptr != nullptr);
    device->used += bytes;
    device->blocks[ptr] = bytes;
    return ptr;
  };
  raw.free = [device](void* ptr) {
    ++device->free_calls;
    auto block = device->blocks.find(ptr);
    REQUIRE(block != device->blocks.end());  // the allocator frees only what the device handed out
    device->used -= block->second;
    device->blocks.erase(block);
    std::free(ptr);
  };
  raw.synchronize = [device] { ++device->synchronize_calls; };
  raw.memory_info = [device](size_t& free_bytes, size_t& total_bytes) {
    free_bytes = device->capacity - device->used;
    total_bytes = device->capacity;
  };
  return raw;
}

std::shared_ptr<FakeDevice> fake_device(size_t capacity = 1024 * kMiB) {
  auto device = std::make_shared<FakeDevice>();
  device->capacity = capacity;
  return device;
}
}  // namespace

TEST_CASE("size classes: 512 B steps up to 1 MiB, eight classes per power of two above") {
  CHECK(CachingAllocator::size_class(0) == 512);
  CHECK(CachingAllocator::size_class(1) == 512);
  CHECK(CachingAllocator::size_class(512) == 512);
  CHECK(CachingAllocator::size_class(513) == 1024);
  CHECK(CachingAllocator::size_class(kMiB) == kMiB);
  CHECK(CachingAllocator::size_class(kMiB + 1) == kMiB + 128 * 1024);
  CHECK(CachingAllocator::size_class(3 * kMiB) == 3 * kMiB);
  CHECK(CachingAllocator::size_class(3 * kMiB + 1) == 3 * kMiB + 256 * 1024);
  CHECK(CachingAllocator::size_class(2 * kMiB - 1) == 2 * kMiB);
  // ResNet-50 at batch 64: a 64x64x112x112 F32 activation (196 MiB) gets a 208 MiB block.
  CHECK(CachingAllocator::size_class(size_t(64) * 64 * 112 * 112 * 4) == 208 * kMiB);
  // Beyond any device: passed through unrounded (and without overflowing).
  CHECK(CachingAllocator::size_class(~size_t(0)) == ~size_t(0));

  // Over a sweep: at least the request, a multiple of 512, idempotent, monotonic, waste bounded.
  size_t previous = 0;
  for (size_t bytes = 1; bytes < (size_t(1) << 34); bytes = bytes * 17 / 16 + 3) {
    size_t block = CachingAllocator::size_class(bytes);
    INFO("bytes = ", bytes, ", block = ", block);
    REQUIRE(block >= bytes);
    REQUIRE(block % 512 == 0);
    REQUIRE(CachingAllocator::size_class(block) == block);
    REQUIRE(block >= previous);
    if (bytes > kMiB) REQUIRE(double(block - bytes) < double(bytes) / 8);
    else REQUIRE(block - bytes < 512);
    previous = block;
  }
}

TEST_CASE("caching allocator reuses a released block of the same class without a driver call") {
  auto device = fake_device();
  CachingAllocator allocator(raw_memory(device));
  void* a = allocator.allocate(1000);
  allocator.release(a, 1000);
  void* b = allocator.allocate(900);  // same 1024-byte class
  CHECK(b == a);
  CHECK(device->allocate_calls == 1);
  void* c = allocator.allocate(2000);  // another class: a new block
  CHECK(c != b);
  CHECK(device->allocate_calls == 2);
  void* d = allocator.allocate(1000);  // 1024 class again, but its only block is in use
  CHECK(d != b);
  CHECK(device->allocate_calls == 3);
  allocator.release(b, 900);
  allocator.release(c, 2000);
  allocator.release(d, 1000);
  CHECK(device->free_calls == 0);  // freed memory stays cached
  CHECK(device->used == 1024 + 2048 + 1024);
}

TEST_CASE("caching allocator: a repeated loop calls the driver only in its first pass") {
  auto device = fake_device();
  CachingAllocator allocator(raw_memory(device));
  const std::vector<size_t> sizes = {147 * 1024, 3 * kMiB + 5, 12 * kMiB, 800, 12 * kMiB, 4000, 40 * kMiB + 1};
  int64_t calls_after_first = 0;
  for (int iteration = 0; iteration < 50; ++iteration) {
    std::vector<void*> live;
    for (size_t bytes : sizes) live.push_back(allocator.allocate(bytes));  // "forward"
    allocator.release(live[3], sizes[3]);                                     // a temporary
    live[3] = allocator.allocate(sizes[3]);
    for (size_t i = live.size(); i-- > 0;) allocator.release(live[i], sizes[i]);  // "backward"
    if (iteration == 0) calls_after_first = device->allocate_calls;
  }
  CHECK(calls_after_first == static_cast<int64_t>(sizes.size()));
  CHECK(device->allocate_calls == calls_after_first);
  CHECK(allocator.stats().device_malloc_calls == calls_after_first);
  CHECK(allocator.stats().bytes_in_use == 0);
}

TEST_CASE("caching allocator statistics: in use, peak, reserved, reset_peak") {
  auto device = fake_device();
  CachingAllocator allocator(raw_memory(device));
  void* a = allocator.allocate(3 * kMiB);        // class 3 MiB
  void* b = allocator.allocate(100);             // class 512 B
  AllocatorStats s = allocator.stats();
  CHECK(s.bytes_in_use == 3 * kMiB + 512);
  CHECK(s.peak_bytes_in_use == 3 * kMiB + 512);
  CHECK(s.bytes_reserved == 3 * kMiB + 512);
  CHECK(s.device_malloc_calls == 2);
  CHECK(s.device_free_calls == 0);

  allocator.release(a, 3 * kMiB);
  s = allocator.stats();
  CHECK(s.bytes_in_use == 512);
  CHECK(s.peak_bytes_in_use == 3 * kMiB + 512);  // the high-water mark stays
  CHECK(s.bytes_reserved == 3 * kMiB + 512);      // cached, still held from the driver

  allocator.reset_peak();
  CHECK(allocator.stats().peak_bytes_in_use == 512);
  void* c = allocator.allocate(600);  // class 1024
  allocator.release(c, 600);
  CHECK(allocator.stats().peak_bytes_in_use == 512 + 1024);
  allocator.release(b, 100);
  CHECK(allocator.stats().bytes_in_use == 0);
}

TEST_CASE("caching allocator empty_cache returns cached blocks only, after synchronising") {
  auto device = fake_device();
  CachingAllocator allocator(raw_memory(device));
  void* kept = allocator.allocate(5 * kMiB);
  void* dropped1 = allocator.allocate(5 * kMiB);
  void* dropped2 = allocator.allocate(700);
  allocator.release(dropped1, 5 * kMiB);
  allocator.release(dropped2, 700);
  allocator.empty_cache();
  AllocatorStats s = allocator.stats();
  CHECK(device->free_calls == 2);
  CHECK(device->synchronize_calls == 1);
  CHECK(s.device_free_calls == 2);
  CHECK(s.bytes_reserved == CachingAllocator::size_class(5 * kMiB));
  CHECK(s.bytes_in_use == s.bytes_reserved);
  CHECK(device->blocks.count(kept) == 1);
  allocator.empty_cache();  // nothing cached: no synchronise, no driver call
  CHECK(device->synchronize_calls == 1);
  CHECK(device->free_calls == 2);
  allocator.release(kept, 5 * kMiB);
}

TEST_CASE("caching allocator frees its cache when destroyed") {
  auto device = fake_device();
  {
    CachingAllocator allocator(raw_memory(device));
    void* a = allocator.allocate(10);
    void* b = allocator.allocate(10 * kMiB);
    allocator.release(a, 10);
    allocator.release(b, 10 * kMiB);
  }
  CHECK(device->free_calls == 2);
  CHECK(device->used == 0);
  CHECK(device->blocks.empty());
}

TEST_CASE("caching allocator out of memory: empties the cache and retries once") {
  auto device = fake_device(64 * kMiB);
  CachingAllocator allocator(raw_memory(device));
  // Fill the device with cached blocks of another class.
  std::vector<void*> blocks;
  for (int i = 0; i < 6; ++i) blocks.push_back(allocator.allocate(10 * kMiB));
  for (void* p : blocks) allocator.release(p, 10 * kMiB);
  CHECK(device->used == 60 * kMiB);
  // 20 MiB do not fit next to 60 MiB of cache; after emptying it they do.
  void* big = allocator.allocate(20 * kMiB);
  CHECK(big != nullptr);
  CHECK(device->allocate_calls == 6 + 2);
  CHECK(device->free_calls == 6);
  CHECK(allocator.stats().bytes_reserved == 20 * kMiB);
  allocator.release(big, 20 * kMiB);
}

TEST_CASE("caching allocator out of memory: throws naming the bytes and the remedy, then still works") {
  auto device = fake_device(64 * kMiB);
  CachingAllocator allocator(raw_memory(device));
  void* live = allocator.allocate(16 * kMiB);
  void* cached = allocator.allocate(8 * kMiB);
  allocator.release(cached, 8 * kMiB);
  const size_t absurd = size_t(1) << 50;  // 1 PiB
  std::string message;
  try {
    allocator.allocate(absurd);
  } catch (const Error& e) {
    message = e.what();
  }
  CHECK(message ==
        "out of device memory: asked for 1125899906842624 bytes (1073741824.0 MiB), 48.0 MiB of 64.0 MiB free, "
        "16.0 MiB reserved by tl (lower --batch-size)");
  CHECK(device->allocate_calls == 2 + 2);  // the first try and exactly one retry
  CHECK(device->free_calls == 1);          // the cached 8 MiB block went back before the retry
  AllocatorStats s = allocator.stats();
  CHECK(s.bytes_in_use == 16 * kMiB);
  CHECK(s.bytes_reserved == 16 * kMiB);

  void* after = allocator.allocate(kMiB);
  CHECK(after != nullptr);
  allocator.release(after, kMiB);
  allocator.release(live, 16 * kMiB);
  CHECK(allocator.stats().bytes_in_use == 0);
}

TEST_CASE("caching allocator out of memory without memory info still names the remedy") {
  auto device = fake_device(kMiB);
  RawDeviceMemory raw = raw_memory(device);
  raw.memory_info = nullptr;
  CachingAllocator allocator(raw);
  CHECK_THROWS_WITH_AS(allocator.allocate(4 * kMiB),
                       "out of device memory: asked for 4194304 bytes (4.0 MiB), free device memory unknown, "
                       "0.0 MiB reserved by tl (lower --batch-size)",
                       Error);
}

TEST_CASE("caching allocator rejects a double release and a foreign pointer") {
  auto device = fake_device();
  CachingAllocator allocator(raw_memory(device));
  void* a = allocator.allocate(64);
  allocator.release(a, 64);
  CHECK_THROWS_AS(allocator.release(a, 64), Error);
  int not_ours = 0;
  CHECK_THROWS_AS(allocator.release(&not_ours, sizeof not_ours), Error);
  allocator.release(nullptr, 0);  // like free(nullptr): nothing
  CHECK(allocator.stats().bytes_in_use == 0);
  // The cached block was not duplicated by the rejected release: two requests get two blocks.
  void* b = allocator.allocate(64);
  void* c = allocator.allocate(64);
  CHECK(b != c);
  allocator.release(b, 64);
  allocator.release(c, 64);
}
