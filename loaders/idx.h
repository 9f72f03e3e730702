#pragma once
// IDX files (MNIST, Fashion-MNIST): a big-endian header 00 00 <type> <ndims>, ndims big-endian uint32
// sizes, then the data. Only unsigned-byte data (type 0x08) is supported. Files may be gzipped
// (detected by the 1f 8b magic; needs zlib) or raw. Nothing in the file is trusted: every size is
// checked against what the file actually holds before memory is committed to it.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace tl {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // row-major, product(dims) bytes
};

// Errors name the path: cannot open, wrong magic, unsupported type, truncated header or data, trailing
// bytes, absurd sizes, corrupt gzip, gzip without zlib.
IdxArray read_idx(const std::string& path);

struct IdxDataset {
  Tensor images;  // F32 [N,1,H,W]: bytes scaled to [0,1], then (x - mean) / std
  Tensor labels;  // I64 [N]
};

// Reads "<dir>/<split>-images-idx3-ubyte" and "<dir>/<split>-labels-idx1-ubyte" (raw preferred, else
// the ".gz" twin) for split "train" or "t10k". Checks the two counts agree and every label is < 10.
// limit > 0 keeps the first `limit` examples.
IdxDataset load_idx_dataset(const std::string& dir, const std::string& split, int64_t limit, double mean,
                            double std);

}  // namespace tl
