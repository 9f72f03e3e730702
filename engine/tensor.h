#pragma once
// Tensor: shape, dtype, device and memory format over a shared Storage plus an element offset.
// Tensors are always dense row-major within their format; views (reshape, slice along the batch)
// share storage and are cheap; copies are explicit (clone, to, copy_from).
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/storage.h"

namespace tl {

class Context;
using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;

  // CPU tensors need no context.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  static Tensor from_vector(const Shape& shape, const std::vector<double>& values);
  // Any device: CUDA memory comes from the context's allocator. Contents are uninitialised.
  static Tensor empty(Context& ctx, const Shape& shape, DType dtype, Device device);
  static Tensor zeros(Context& ctx, const Shape& shape, DType dtype, Device device);
  // Same shape, dtype and device as `like`.
  static Tensor empty_like(Context& ctx, const Tensor& like);
  static Tensor zeros_like(Context& ctx, const Tensor& like);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool is_cuda() const { return device_ == Device::CUDA; }
  MemoryFormat format() const { return format_; }
  std::string describe() const;  // e.g. "F32[3,64,7,7] cpu"

  // Typed pointer to the first element; throws when T does not match the dtype.
  template <class T> T* data() const {
    TL_CHECK(dtype_of<T>() == dtype_, "tensor ", describe(), " accessed as ", dtype_name(dtype_of<T>()));
    return static_cast<T*>(raw());
  }
  void* raw() const;

  // Views sharing storage.
  Tensor reshape(const Shape& shape) const;  // one dimension may be -1
  Tensor slice(int64_t begin, int64_t end) const;  // rows [begin, end) of dimension 0

  // Explicit copies.
  Tensor clone() const;  // CPU
  Tensor clone(Context& ctx) const;
  Tensor to(Context& ctx, Device device) const;  // returns *this when already there
  Tensor to_dtype(DType dtype) const;  // CPU; converts values
  void copy_from(Context& ctx, const Tensor& src);  // same numel and dtype, any devices
  void fill(Context& ctx, double value);
  void fill(double value);  // CPU

  // CPU convenience for tests and tools: element i of the flat tensor as double.
  double item(int64_t index = 0) const;
  std::vector<double> to_vector() const;
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  MemoryFormat format_ = MemoryFormat::NCHW;
};

// Throws naming `who` and both shapes when they differ.
void check_same_shape(const char* who, const Tensor& a, const Tensor& b);
void check_same_device_dtype(const char* who, const Tensor& a, const Tensor& b);

}  // namespace tl
