#pragma once
// Runs a generic lambda with the C++ scalar type of a floating-point tensor: the CPU reference is
// written once as a template and runs in float (models) or double (gradient checks).
#include "engine/error.h"
#include "engine/tensor.h"

namespace tl::cpu {

template <class F>
void dispatch_float(const char* op, const Tensor& t, F&& body) {
  TL_CHECK(t.device() == Device::CPU, op, ": CPU kernel called with ", t.describe());
  switch (t.dtype()) {
    case DType::F32: body(float{}); return;
    case DType::F64: body(double{}); return;
    default: throw Error(str(op, ": unsupported dtype ", dtype_name(t.dtype()), " (expected F32 or F64)"));
  }
}

}  // namespace tl::cpu
