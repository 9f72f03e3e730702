#pragma once
// Host-to-device copies of batches through pinned memory, queued on the Context's stream.
#include "engine/context.h"
#include "engine/tensor.h"

namespace tl {

// A new CUDA tensor with the contents of the CPU tensor `host` (any dtype). The host data is staged
// in one of the CudaState's two pinned buffers and the pinned-to-device copy is queued on the
// Context's stream, so the call returns before the device has the data; work queued after it on the
// stream sees it. `host` may be overwritten or freed as soon as the call returns.
Tensor upload_async(Context& ctx, const Tensor& host);

}  // namespace tl
