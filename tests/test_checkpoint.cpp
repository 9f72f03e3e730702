#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/model.h"
#include "support/test_util.h"
#include "weights/safetensors.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

// A test-only layer with the shape of a real one: a weight, a bias, a float buffer and an integer
// buffer (like BatchNorm's running_mean and num_batches_tracked). Forward and backward are identities:
// only the state matters here.
class StateLayer : public Layer {
 public:
  StateLayer(int64_t in, int64_t out)
      : Layer("StateLayer"),
        weight_("weight", Tensor::zeros({out, in})),
        bias_("bias", Tensor::zeros({out})),
        running_mean_("running_mean", Tensor::zeros({out})),
        steps_("steps", Tensor::zeros({}, DType::I64)) {}

  std::vector<Parameter*> local_parameters() override { return {&weight_, &bias_}; }
  std::vector<Buffer*> local_buffers() override { return {&running_mean_, &steps_}; }

 protected:
  Tensor forward_impl(Context&, const Tensor& x, Mode) override { return x; }
  Tensor backward_impl(Context&, const Tensor& dy, bool need_dx) override { return need_dx ? dy : Tensor(); }

 private:
  Parameter weight_, bias_;
  Buffer running_mean_, steps_;
};

// stem (3->4), then a nested Sequential "block" of 0 (4->5) and 1 (5->head), then any extra layers.
std::unique_ptr<Model> make_model(int64_t head = 2, const std::vector<std::string>& extra_layers = {}) {
  auto model = std::make_unique<Model>();
  model->root().emplace<StateLayer>("stem", 3, 4);
  auto& block = model->root().emplace<Sequential>("block");
  block.emplace<StateLayer>("0", 4, 5);
  block.emplace<StateLayer>("1", 5, head);
  for (const std::string& name : extra_layers) model->root().emplace<StateLayer>(name, 2, 2);
  model->assign_paths();
  return model;
}

// Every parameter and buffer gets distinct random values (integers for I64).
void randomize(Model& model, uint64_t seed) {
  Rng rng(seed);
  for (auto& np : model.named_parameters())
    np.parameter->value = test::random_tensor(rng, np.parameter->value.shape(), np.parameter->value.dtype());
  for (auto& nb : model.named_buffers()) {
    Tensor& v = nb.buffer->value;
    if (v.dtype() == DType::I64) {
      for (int64_t i = 0; i < v.numel(); ++i) v.data<int64_t>()[i] = static_cast<int64_t>(rng.next_u64() >> 1);
    } else {
      v = test::random_tensor(rng, v.shape(), v.dtype());
    }
  }
}

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("checkpoint") {}
};

std::string load_error(const std::string& path, Model& model, const LoadOptions& options = {}) {
  try {
    load_checkpoint(path, model, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("checkpoint: save then load into a fresh model is bit identical, metadata included") {
  TempDir dir;
  auto saved = make_model();
  randomize(*saved, 7);
  saved->architecture = "test-net";
  saved->class_names = {"ants", "bees", "caf\xC3\xA9 \"quoted\"", "back\\slash"};
  saved->metadata = {{"preprocessing", "rgb"}, {"mean", "0.485,0.456,0.406"}};
  std::string path = dir.file("model.safetensors");
  save_checkpoint(path, *saved, {{"epoch", "12"}});
  CHECK(fs::exists(path));
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);  // no temp file left

  auto loaded = make_model();
  std::vector<void*> storage_before;
  for (auto& np : loaded->named_parameters()) storage_before.push_back(np.parameter->value.raw());
  load_checkpoint(path, *loaded);

  auto a = saved->named_parameters();
  auto b = loaded->named_parameters();
  REQUIRE(a.size() == 6);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].name);
    CHECK(a[i].name == b[i].name);
    CHECK(test::bit_identical(a[i].parameter->value, b[i].parameter->value));
    CHECK(b[i].parameter->value.raw() == storage_before[i]);  // loaded in place, not replaced
  }
  auto ab = saved->named_buffers();
  auto bb = loaded->named_buffers();
  REQUIRE(ab.size() == 6);
  REQUIRE(ab.size() == bb.size());
  for (size_t i = 0; i < ab.size(); ++i) {
    CAPTURE(ab[i].name);
    CHECK(test::bit_identical(ab[i].buffer->value, bb[i].buffer->value));
  }
  CHECK(loaded->architecture == "test-net");
  CHECK(loaded->class_names == saved->class_names);
  std::map<std::string, std::string> expected_metadata = saved->metadata;
  expected_metadata["epoch"] = "12";
  CHECK(loaded->metadata == expected_metadata);

  // The file holds exactly the canonical names, parameters then buffers, and the metadata keys.
  SafetensorsFile file = SafetensorsFile::open(path);
  std::vector<std::string> names;
  for (const auto& e : file.entries()) names.push_back(e.name);
  CHECK(names == std::vector<std::string>{"stem.weight", "stem.bias", "block.0.weight", "block.0.bias",
                                          "block.1.weight", "block.1.bias", "stem.running_mean", "stem.steps",
                                          "block.0.running_mean", "block.0.steps", "block.1.running_mean",
                                          "block.1.steps"});
  CHECK(file.metadata().at("architecture") == "test-net");
  CHECK(file.metadata().at("class_names") == "[\"ants\",\"bees\",\"caf\xC3\xA9 \\\"quoted\\\"\",\"back\\\\slash\"]");
}

TEST_CASE("checkpoint: strict load lists every missing, unexpected and mismatched tensor in one error") {
  TempDir dir;
  auto saved = make_model(2, {"old_head"});
  randomize(*saved, 1);
  std::string path = dir.file("m.safetensors");
  save_checkpoint(path, *saved);

  auto other = make_model(3, {"new_head"});
  randomize(*other, 2);
  Tensor stem_before = other->parameter("stem.weight").value.clone();
  CHECK(load_error(path, *other) == path +
                                        ": checkpoint does not match the model"
                                        "\n  missing from the checkpoint (4):"
                                        "\n    new_head.weight\n    new_head.bias"
                                        "\n    new_head.running_mean\n    new_head.steps"
                                        "\n  unexpected in the checkpoint (4):"
                                        "\n    old_head.weight\n    old_head.bias"
                                        "\n    old_head.running_mean\n    old_head.steps"
                                        "\n  mismatched (3):"
                                        "\n    block.1.weight: checkpoint [2,5] vs model [3,5]"
                                        "\n    block.1.bias: checkpoint [2] vs model [3]"
                                        "\n    block.1.running_mean: checkpoint [2] vs model [3]");
  // A failed load changes nothing.
  CHECK(test::bit_identical(other->parameter("stem.weight").value, stem_before));
}

TEST_CASE("checkpoint: allow_missing globs relax missing tensors only") {
  TempDir dir;
  auto saved = make_model();
  randomize(*saved, 3);
  std::string path = dir.file("m.safetensors");
  save_checkpoint(path, *saved);

  auto with_head = make_model(2, {"head"});
  CHECK(load_error(path, *with_head) == path +
                                            ": checkpoint does not match the model"
                                            "\n  missing from the checkpoint (4):"
                                            "\n    head.weight\n    head.bias\n    head.running_mean\n    head.steps");
  // A glob that covers only some of them leaves the rest listed.
  CHECK(load_error(path, *with_head, {true, {"head.*ing_mean", "head.steps"}}) ==
        path + ": checkpoint does not match the model\n  missing from the checkpoint (2):\n    head.weight\n    head.bias");
  with_head->parameter("head.weight").value.fill(0.25);
  CHECK(load_error(path, *with_head, {true, {"head.*"}}) == "");
  CHECK(test::bit_identical(with_head->parameter("stem.weight").value, saved->parameter("stem.weight").value));
  CHECK(with_head->parameter("head.weight").value.to_vector() == std::vector<double>(4, 0.25));  // untouched
}

TEST_CASE("checkpoint: non-strict load ignores missing and unexpected tensors but not mismatches") {
  TempDir dir;
  auto saved = make_model(2, {"old_head"});
  randomize(*saved, 4);
  std::string path = dir.file("m.safetensors");
  save_checkpoint(path, *saved);

  auto other = make_model(2, {"new_head"});
  CHECK(load_error(path, *other, {false, {}}) == "");
  CHECK(test::bit_identical(other->parameter("block.1.bias").value, saved->parameter("block.1.bias").value));

  auto wrong = make_model(3);
  CHECK(load_error(path, *wrong, {false, {}}) == path +
                                                    ": checkpoint does not match the model\n  mismatched (3):"
                                                    "\n    block.1.weight: checkpoint [2,5] vs model [3,5]"
                                                    "\n    block.1.bias: checkpoint [2] vs model [3]"
                                                    "\n    block.1.running_mean: checkpoint [2] vs model [3]");
}

TEST_CASE("checkpoint: dtype must match exactly, no conversion at load time") {
  TempDir dir;
  auto saved = make_model();
  std::string path = dir.file("m.safetensors");
  save_checkpoint(path, *saved);
  auto f64 = make_model();
  f64->to_dtype(DType::F64);
  std::string msg = load_error(path, *f64);
  CHECK(msg.rfind(path + ": checkpoint does not match the model\n  mismatched (9):"
                         "\n    stem.weight: checkpoint F32[4,3] vs model F64[4,3]",
                  0) == 0);
  CHECK(msg.find("stem.steps") == std::string::npos);  // I64 buffers stay I64 and match
}

TEST_CASE("checkpoint: corrupt class_names metadata is an error naming the file") {
  TempDir dir;
  auto model = make_model();
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& np : model->named_parameters()) tensors.emplace_back(np.name, np.parameter->value);
  for (auto& nb : model->named_buffers()) tensors.emplace_back(nb.name, nb.buffer->value);
  std::string path = dir.file("m.safetensors");
  write_safetensors(path, tensors, {{"class_names", "[\"a\", 3]"}});
  CHECK(load_error(path, *model) ==
        path + ": metadata \"class_names\" is not a JSON array of strings: JSON value is integer, expected string");
  write_safetensors(path, tensors, {{"class_names", "ants,bees"}});
  CHECK(load_error(path, *model) == path +
                                        ": metadata \"class_names\" is not a JSON array of strings: invalid JSON at "
                                        "byte 0: unexpected character 'a', expected a value");
  // Without the keys the model keeps what it had.
  write_safetensors(path, tensors, {});
  model->architecture = "kept";
  model->class_names = {"x"};
  CHECK(load_error(path, *model) == "");
  CHECK(model->architecture == "kept");
  CHECK(model->class_names == std::vector<std::string>{"x"});
}

TEST_CASE("checkpoint: a malformed file fails to load with the reader's message") {
  TempDir dir;
  auto model = make_model();
  std::string path = dir.file("absent.safetensors");
  CHECK(load_error(path, *model) == path + ": cannot open: No such file or directory");
}
