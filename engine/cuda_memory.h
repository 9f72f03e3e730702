#pragma once
// Copies and fills that touch device memory, on the Context's stream.
#include <cstddef>

#include "engine/dtype.h"

namespace tl {

class Context;
class Tensor;

// Copies bytes between any two devices; returns once the destination is valid for the host
// (device-to-host copies synchronise the stream).
void cuda_copy(Context& ctx, void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void cuda_fill(Context& ctx, Tensor& t, double value);

}  // namespace tl
