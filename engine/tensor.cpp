#include "engine/tensor.h"

#include <cstring>

#include "engine/context.h"
#include "engine/cuda_memory.h"

namespace tl {

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    TL_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
    n *= d;
  }
  return n;
}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), Device::CPU, nullptr);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  if (t.nbytes()) std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill(value);
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  Tensor t = empty(shape, DType::F32);
  TL_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_vector: ", values.size(),
           " values for shape ", shape_str(shape));
  if (!values.empty()) std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<double>& values) {
  Tensor t = empty(shape, DType::F64);
  TL_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_vector: ", values.size(),
           " values for shape ", shape_str(shape));
  if (!values.empty()) std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::empty(Context& ctx, const Shape& shape, DType dtype, Device device) {
  if (device == Device::CPU) return empty(shape, dtype);
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), device, ctx.cuda_allocator());
  return t;
}

Tensor Tensor::zeros(Context& ctx, const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(ctx, shape, dtype, device);
  t.fill(ctx, 0.0);
  return t;
}

Tensor Tensor::empty_like(Context& ctx, const Tensor& like) {
  return empty(ctx, like.shape(), like.dtype(), like.device());
}

Tensor Tensor::zeros_like(Context& ctx, const Tensor& like) {
  return zeros(ctx, like.shape(), like.dtype(), like.device());
}

int64_t Tensor::size(int64_t axis) const {
  int64_t d = dim();
  if (axis < 0) axis += d;
  TL_CHECK(axis >= 0 && axis < d, "axis ", axis, " out of range for tensor ", describe());
  return shape_[axis];
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return str(dtype_name(dtype_), shape_str(shape_), " ", device_name(device_));
}

void* Tensor::raw() const {
  TL_CHECK(defined(), "access to an undefined tensor");
  return static_cast<char*>(storage_->data) + offset_ * dtype_size(dtype_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  TL_CHECK(defined(), "reshape of an undefined tensor");
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      TL_CHECK(infer < 0, "reshape ", describe(), " to ", shape_str(shape), ": two -1 dimensions");
      infer = static_cast<int64_t>(i);
    } else {
      known *= out[i];
    }
  }
  if (infer >= 0) {
    TL_CHECK(known > 0 && numel_ % known == 0, "cannot reshape ", describe(), " to ", shape_str(shape));
    out[infer] = numel_ / known;
  }
  TL_CHECK(shape_numel(out) == numel_, "cannot reshape ", describe(), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = out;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  TL_CHECK(dim() >= 1, "slice of a scalar tensor");
  TL_CHECK(0 <= begin && begin <= end && end <= shape_[0], "slice [", begin, ",", end, ") out of range for ",
           describe());
  Tensor t = *this;
  int64_t row = shape_[0] ? numel_ / shape_[0] : 0;
  t.offset_ += begin * row;
  t.shape_[0] = end - begin;
  t.numel_ = t.shape_[0] * row;
  return t;
}

Tensor Tensor::clone() const {
  TL_CHECK(device_ == Device::CPU, "clone() without a context needs a CPU tensor, got ", describe());
  Tensor t = empty(shape_, dtype_);
  if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
  t.format_ = format_;
  return t;
}

Tensor Tensor::clone(Context& ctx) const {
  Tensor t = empty(ctx, shape_, dtype_, device_);
  t.format_ = format_;
  t.copy_from(ctx, *this);
  return t;
}

Tensor Tensor::to(Context& ctx, Device device) const {
  if (device == device_) return *this;
  Tensor t = empty(ctx, shape_, dtype_, device);
  t.format_ = format_;
  t.copy_from(ctx, *this);
  return t;
}

Tensor Tensor::to_dtype(DType dtype) const {
  TL_CHECK(device_ == Device::CPU, "to_dtype needs a CPU tensor, got ", describe());
  if (dtype == dtype_) return clone();
  Tensor t = empty(shape_, dtype);
  for (int64_t i = 0; i < numel_; ++i) {
    double v = item(i);
    switch (dtype) {
      case DType::F32: t.data<float>()[i] = static_cast<float>(v); break;
      case DType::F64: t.data<double>()[i] = v; break;
      case DType::I64: t.data<int64_t>()[i] = static_cast<int64_t>(v); break;
      case DType::U8: t.data<uint8_t>()[i] = static_cast<uint8_t>(v); break;
    }
  }
  return t;
}

void Tensor::copy_from(Context& ctx, const Tensor& src) {
  TL_CHECK(src.numel() == numel_ && src.dtype() == dtype_, "copy_from: cannot copy ", src.describe(), " into ",
           describe());
  if (nbytes() == 0) return;
  if (device_ == Device::CPU && src.device() == Device::CPU) {
    std::memcpy(raw(), src.raw(), nbytes());
    return;
  }
  cuda_copy(ctx, raw(), device_, src.raw(), src.device(), nbytes());
}

void Tensor::fill(Context& ctx, double value) {
  if (device_ == Device::CPU) return fill(value);
  cuda_fill(ctx, *this, value);
}

void Tensor::fill(double value) {
  TL_CHECK(device_ == Device::CPU, "fill(value) without a context needs a CPU tensor, got ", describe());
  switch (dtype_) {
    case DType::F32: { float* p = data<float>(); for (int64_t i = 0; i < numel_; ++i) p[i] = float(value); break; }
    case DType::F64: { double* p = data<double>(); for (int64_t i = 0; i < numel_; ++i) p[i] = value; break; }
    case DType::I64: { int64_t* p = data<int64_t>(); for (int64_t i = 0; i < numel_; ++i) p[i] = int64_t(value); break; }
    case DType::U8: { uint8_t* p = data<uint8_t>(); for (int64_t i = 0; i < numel_; ++i) p[i] = uint8_t(value); break; }
  }
}

double Tensor::item(int64_t index) const {
  TL_CHECK(device_ == Device::CPU, "item() needs a CPU tensor, got ", describe());
  TL_CHECK(index >= 0 && index < numel_, "item(", index, ") out of range for ", describe());
  switch (dtype_) {
    case DType::F32: return data<float>()[index];
    case DType::F64: return data<double>()[index];
    case DType::I64: return static_cast<double>(data<int64_t>()[index]);
    case DType::U8: return static_cast<double>(data<uint8_t>()[index]);
  }
  return 0;
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> out(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) out[i] = item(i);
  return out;
}

void check_same_shape(const char* who, const Tensor& a, const Tensor& b) {
  TL_CHECK(a.shape() == b.shape(), who, ": shape mismatch, ", shape_str(a.shape()), " vs ", shape_str(b.shape()));
}

void check_same_device_dtype(const char* who, const Tensor& a, const Tensor& b) {
  TL_CHECK(a.device() == b.device() && a.dtype() == b.dtype(), who, ": tensors differ in device or dtype: ",
           a.describe(), " vs ", b.describe());
}

}  // namespace tl
