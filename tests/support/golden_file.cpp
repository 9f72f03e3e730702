#include "support/golden_file.h"

#include <vector>

#include "engine/error.h"
#include "support/test_util.h"
#include "weights/json.h"

namespace tl::test {

GoldenFile::GoldenFile(const std::string& name)
    : file(SafetensorsFile::open(source_dir() + "/tests/golden/" + name)) {}

const std::string& GoldenFile::meta(const std::string& key) const {
  auto it = file.metadata().find(key);
  if (it == file.metadata().end()) throw Error(str(file.path(), ": no metadata key '", key, "'"));
  return it->second;
}

Tensor golden_images() { return GoldenFile("golden_inputs.safetensors").get("images"); }

Tensor golden_labels(const GoldenFile& golden) {
  const json::Value parsed = json::parse(golden.meta("labels"));  // kept: the loop below walks into it
  std::vector<double> labels;
  for (const json::Value& v : parsed.as_array()) labels.push_back(static_cast<double>(v.as_int()));
  return Tensor::from_vector({static_cast<int64_t>(labels.size())}, labels).to_dtype(DType::I64);
}

}  // namespace tl::test
