#pragma once
// Element types and devices a Tensor can have.
#include <cstddef>
#include <cstdint>
#include <string>

namespace tl {

// F32 is what models run in; F64 lets the CPU reference run in double for gradient checks;
// I64 exists for buffers such as BatchNorm's num_batches_tracked and for labels; U8 for raw image
// pixels on their way to the device (normalised there).
enum class DType : uint8_t { F32, F64, I64, U8 };
enum class Device : uint8_t { CPU, CUDA };
// NCHW is the only layout kernels accept today; NHWC is reserved for tensor-core work.
enum class MemoryFormat : uint8_t { NCHW, NHWC };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* device_name(Device device);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }

}  // namespace tl
