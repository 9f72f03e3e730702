#pragma once
// The bottleneck approach to transfer learning: a frozen base runs once per image and its features are
// kept on disk, so training a head (again, with other hyperparameters) decodes no image at all.
//
// One safetensors file per key (split name, weights hash, transform description) in the cache folder,
// named features-<sha256 of the key>.safetensors. It holds tensor "features" F32 [N,D] and metadata:
// "rows", a JSON array giving each row's identity — [path, size, mtime_ns] for a file, [path,
// "sha256:<hex of width, height and pixels>"] for an in-memory example — plus the key itself for humans.
// Paths are made absolute, so the cache does not depend on the working directory. A row is reused
// when an example's path and identity match; anything else (new, touched, rewritten file; changed
// pixels) is recomputed, and the file is rewritten atomically. A cache file that cannot be read or
// does not fit is reported on stderr and ignored: the cache can only save work, never fail a run.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "loaders/dataset.h"

namespace tl {

// compute() is called with at most this many indices at a time: memory stays bounded and the caller can
// show progress between calls.
constexpr int64_t kFeatureCacheChunk = 64;

class FeatureCache {
 public:
  FeatureCache(std::string dir, std::string weights_hash, std::string transform_description);

  // The [N,D] CPU F32 features of data.examples, in dataset order. compute(indices) returns [k,D] CPU
  // F32 (or F64) features for those examples, in that order; it is called only for missing or stale
  // rows (for all rows when the cached D differs from what compute() returns). `recomputed`, when
  // given, receives the number of rows compute() produced. Errors from compute() propagate; a cache
  // file that cannot be written is reported on stderr and the features are still returned.
  Tensor get(const Dataset& data, const std::string& split,
             const std::function<Tensor(const std::vector<int64_t>&)>& compute, int64_t* recomputed = nullptr);

  // The cache file for `split` (whether or not it exists yet).
  std::string file_for(const std::string& split) const;

 private:
  std::string dir_, weights_hash_, transform_;
};

// NumPy .npy version 1.0, dtype '<f4', C order, shape taken from the tensor (see loaders/npy.h).
void export_features_npy(const std::string& path, const Tensor& features);
// CSV: a header "path,label,f0,f1,...", then one line per example in dataset order. Paths holding a
// comma, quote or line break are quoted per RFC 4180; floats are printed with %.9g, which round-trips
// every F32 value (F64 features are converted to F32 first). Lines end with "\n".
void export_features_csv(const std::string& path, const Tensor& features, const Dataset& data);

}  // namespace tl
