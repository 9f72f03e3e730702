#pragma once
// NumPy .npy files (https://numpy.org/neps/nep-0001-npy-format.html), so features exported by tl load
// with a plain numpy.load(). The writer emits version 1.0, dtype '<f4', C order: the magic "\x93NUMPY",
// the version bytes 1 0, a little-endian uint16 header length, then an ASCII Python dict literal
// padded with spaces and ended by '\n' so the data starts at a multiple of 64 bytes, then the raw
// little-endian floats.
//
// The reader exists for the tests and for tools that read our own exports back: it accepts versions
// 1.0 and 2.0 with dtype '<f4' in C order only, and treats the file as untrusted (every field checked,
// the data size must match the shape exactly). Errors are tl::Error starting with the file's path.
#include <string>

#include "engine/tensor.h"

namespace tl {

// The header (magic through the terminating '\n') for a '<f4' C-order array of `shape`.
std::string npy_header(const Shape& shape);

// Writes a CPU F32 tensor of any rank (F64 is converted to F32) through a temporary file renamed over
// `path`, so a failed export never leaves a truncated .npy under the real name.
void write_npy(const std::string& path, const Tensor& tensor);

// Reads a '<f4' C-order .npy file into a fresh CPU F32 tensor with the file's shape.
Tensor read_npy(const std::string& path);

}  // namespace tl
