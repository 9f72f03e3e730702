// ResNet18 and VGG16 as torchvision builds them (names, shapes, counts, output shapes at several input sizes) and the
// transfer-learning heads (layers/models/heads.h). Numerical parity with PyTorch is test_golden.cpp's job.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/loss.h"
#include "engine/model.h"
#include "layers/models/heads.h"
#include "layers/models/resnet18.h"
#include "layers/models/vgg16.h"
#include "support/golden_weights.h"
#include "support/test_util.h"

using namespace tl;

namespace {

struct LayoutEntry {
  std::string name;
  Shape shape;
  DType dtype;
};

// state_dict order, buffers included, as torchvision's state_dict() lists them.
std::vector<LayoutEntry> layout(Model& model) {
  std::vector<LayoutEntry> out;
  for (auto& e : test::state_dict_entries(model)) out.push_back({e.name, e.value->shape(), e.value->dtype()});
  return out;
}

// resnet18_state_dict_layout.tsv: "# comment" lines, then name<TAB>[d0, d1, ...]<TAB>float32|int64.
std::vector<LayoutEntry> read_layout_tsv(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open ", path);
  std::vector<LayoutEntry> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream fields(line);
    std::string name, shape_text, dtype_text;
    REQUIRE(std::getline(fields, name, '\t'));
    REQUIRE(std::getline(fields, shape_text, '\t'));
    REQUIRE(std::getline(fields, dtype_text, '\t'));
    REQUIRE(shape_text.size() >= 2);
    Shape shape;
    std::stringstream dims(shape_text.substr(1, shape_text.size() - 2));
    std::string dim;
    while (std::getline(dims, dim, ',')) shape.push_back(std::stoll(dim));
    REQUIRE((dtype_text == "float32" || dtype_text == "int64"));
    out.push_back({name, shape, dtype_text == "int64" ? DType::I64 : DType::F32});
  }
  return out;
}

void check_layout(const std::vector<LayoutEntry>& ours, const std::vector<LayoutEntry>& expected) {
  REQUIRE(ours.size() == expected.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    INFO("entry ", i, ": ours ", ours[i].name, " ", shape_str(ours[i].shape), ", expected ", expected[i].name, " ",
         shape_str(expected[i].shape));
    CHECK(ours[i].name == expected[i].name);
    CHECK(ours[i].shape == expected[i].shape);
    CHECK(ours[i].dtype == expected[i].dtype);
  }
}

// torchvision vgg16's state_dict, written out from its definition.
std::vector<LayoutEntry> vgg16_layout(int64_t num_classes, bool include_top) {
  const int conv_index[] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
  const int64_t channels[] = {64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512};
  std::vector<LayoutEntry> out;
  int64_t in = 3;
  for (int i = 0; i < 13; ++i) {
    std::string prefix = "features." + std::to_string(conv_index[i]);
    out.push_back({prefix + ".weight", {channels[i], in, 3, 3}, DType::F32});
    out.push_back({prefix + ".bias", {channels[i]}, DType::F32});
    in = channels[i];
  }
  if (include_top) {
    out.push_back({"classifier.0.weight", {4096, 25088}, DType::F32});
    out.push_back({"classifier.0.bias", {4096}, DType::F32});
    out.push_back({"classifier.3.weight", {4096, 4096}, DType::F32});
    out.push_back({"classifier.3.bias", {4096}, DType::F32});
    out.push_back({"classifier.6.weight", {num_classes, 4096}, DType::F32});
    out.push_back({"classifier.6.bias", {num_classes}, DType::F32});
  }
  return out;
}

Tensor images(Rng& rng, int64_t n, int64_t size) { return test::random_tensor(rng, {n, 3, size, size}, DType::F32); }

void check_torchvision_metadata(Model& model) {
  CHECK(model.metadata["preprocessing.color"] == "RGB");
  CHECK(model.metadata["preprocessing.scale"] == "1");
  CHECK(model.metadata["preprocessing.mean"] == "0.485,0.456,0.406");
  CHECK(model.metadata["preprocessing.std"] == "0.229,0.224,0.225");
  CHECK(model.metadata["preprocessing.resize"] == "256");
  CHECK(model.metadata["preprocessing.crop"] == "224");
}

}  // namespace

TEST_CASE("resnet18 has torchvision's state_dict layout, parameter count and metadata") {
  Model model;
  build_resnet18(model);
  CHECK(model.architecture == "resnet18");
  check_torchvision_metadata(model);
  CHECK(model.count_parameters() == 11'689'512);
  CHECK(layout(model).size() == 122);
  const std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped the layout comparison: ../shared/data (resnet18_state_dict_layout.tsv) is absent");
    return;
  }
  check_layout(layout(model), read_layout_tsv(data + "/weights/resnet18_state_dict_layout.tsv"));
}

TEST_CASE("vgg16 has torchvision's state_dict layout and parameter counts, with and without top") {
  Model full;
  build_vgg16(full);
  CHECK(full.architecture == "vgg16");
  CHECK(full.metadata["include_top"] == "true");
  check_torchvision_metadata(full);
  CHECK(full.count_parameters() == 138'357'544);
  check_layout(layout(full), vgg16_layout(1000, true));

  Model notop;
  build_vgg16(notop, 1000, false);
  CHECK(notop.metadata["include_top"] == "false");
  check_torchvision_metadata(notop);
  CHECK(notop.count_parameters() == 14'714'688);
  check_layout(layout(notop), vgg16_layout(1000, false));
  CHECK(notop.find_layer("features.30") != nullptr);  // the last max pool is part of the features
  CHECK(notop.find_layer("avgpool") == nullptr);
}

TEST_CASE("building into a model that has layers, or with no classes, is an error") {
  Model model;
  build_resnet18(model);
  CHECK_THROWS_WITH(build_resnet18(model), doctest::Contains("already has"));
  CHECK_THROWS_WITH(build_vgg16(model), doctest::Contains("already has"));
  Model empty;
  CHECK_THROWS_WITH(build_resnet18(empty, 0), doctest::Contains("num_classes"));
}

TEST_CASE("inputs of 32, 150 and 224 pixels give the right output shapes") {
  Context ctx;
  Rng rng(3);
  Model resnet, vgg, notop;
  build_resnet18(resnet, 10);
  build_vgg16(vgg, 10);
  build_vgg16(notop, 10, false);
  CHECK(resnet.parameter("fc.weight").value.shape() == Shape{10, 512});
  CHECK(vgg.parameter("classifier.6.weight").value.shape() == Shape{10, 4096});
  for (int64_t size : {32, 150, 224}) {
    INFO("input ", size, "x", size);
    Tensor x = images(rng, 1, size);
    CHECK(resnet.forward(ctx, x, Mode::Eval).shape() == Shape{1, 10});
    CHECK(model_output_shape(resnet, {3, size, size}) == Shape{10});
    // Run vgg16 layer by layer to see its feature map too: [512, H/32, W/32] (floor at each pool), then the
    // adaptive pool brings it to 7x7 (replicating the single pixel of a 32x32 input).
    Tensor h = x;
    Shape features_shape;
    for (size_t i = 0; i < vgg.root().size(); ++i) {
      h = vgg.root().at(i).forward(ctx, h, Mode::Eval);
      if (vgg.root().name_at(i) == "features") features_shape = h.shape();
      if (vgg.root().name_at(i) == "avgpool") CHECK(h.shape() == Shape{1, 512, 7, 7});
    }
    int64_t side = size / 32;
    CHECK(features_shape == Shape{1, 512, side, side});
    CHECK(h.shape() == Shape{1, 10});
    CHECK(model_output_shape(vgg, {3, size, size}) == Shape{10});
    CHECK(model_output_shape(notop, {3, size, size}) == Shape{512, side, side});
  }
  CHECK(notop.forward(ctx, images(rng, 2, 32), Mode::Eval).shape() == Shape{2, 512, 1, 1});
  CHECK_THROWS_WITH(model_output_shape(notop, {4, 32, 32}), doctest::Contains("features.0"));
}

TEST_CASE("replace_head and head (c): a fresh Linear where the classifier was, under the same name") {
  Context ctx;
  Rng rng(5);
  Model resnet;
  build_resnet18(resnet);
  resnet.set_trainable("*", false);
  replace_head(resnet, 7, rng);
  CHECK(resnet.parameter("fc.weight").value.shape() == Shape{7, 512});
  CHECK(resnet.parameter("fc.bias").value.shape() == Shape{7});
  CHECK(resnet.count_parameters() == 11'689'512 - 1000 * 513 + 7 * 513);
  CHECK(resnet.count_parameters(true) == 7 * 513);  // only the new head trains
  CHECK(resnet.find_layer("fc")->path() == "fc");
  CHECK(resnet.forward(ctx, images(rng, 2, 32), Mode::Eval).shape() == Shape{2, 7});

  Model vgg;
  build_vgg16(vgg);
  replace_head(vgg, 3, rng);
  CHECK(vgg.parameter("classifier.6.weight").value.shape() == Shape{3, 4096});
  CHECK(vgg.parameter("classifier.3.weight").value.shape() == Shape{4096, 4096});  // the rest untouched
  CHECK(vgg.count_parameters() == 138'357'544 - 1000 * 4097 + 3 * 4097);
  // Head (c) of the seeds through add_head: an empty spec is the same replacement.
  CHECK(add_head(vgg, parse_head_spec("", 4), rng) == "classifier.6");
  CHECK(vgg.parameter("classifier.6.weight").value.shape() == Shape{4, 4096});
  CHECK(add_head(resnet, parse_head_spec("", 4), rng) == "fc");
  CHECK(resnet.parameter("fc.weight").value.shape() == Shape{4, 512});

  Model notop;
  build_vgg16(notop, 1000, false);
  CHECK_THROWS_WITH(replace_head(notop, 3, rng), doctest::Contains("add_head"));
  CHECK_THROWS_WITH(replace_head(resnet, 0, rng), doctest::Contains("num_classes"));
}

TEST_CASE("head specs parse, format back and reject what they do not understand") {
  HeadSpec plain = parse_head_spec("", 5);
  CHECK(plain.hidden.empty());
  CHECK(plain.dropout == 0.0);
  CHECK(plain.outputs == 5);
  CHECK_FALSE(plain.append);

  HeadSpec mlp = parse_head_spec("256,dropout=0.5", 1);
  CHECK(mlp.hidden == std::vector<int64_t>{256});
  CHECK(mlp.dropout == 0.5);
  CHECK(mlp.outputs == 1);
  CHECK(format_head_spec(mlp) == "256,dropout=0.5");

  HeadSpec deep = parse_head_spec(" 512, 256 ,dropout=0.25,append", 3);
  CHECK(deep.hidden == std::vector<int64_t>{512, 256});
  CHECK(deep.dropout == 0.25);
  CHECK(deep.append);
  CHECK(format_head_spec(deep) == "512,256,dropout=0.25,append");
  HeadSpec odd = parse_head_spec("64,dropout=0.1", 2);
  HeadSpec again = parse_head_spec(format_head_spec(odd), 2);
  CHECK(again.dropout == odd.dropout);
  CHECK(again.hidden == odd.hidden);

  CHECK_THROWS_WITH(parse_head_spec("256,", 2), doctest::Contains("empty token"));
  CHECK_THROWS_WITH(parse_head_spec(",256", 2), doctest::Contains("unknown token ''"));
  CHECK_THROWS_WITH(parse_head_spec("relu", 2), doctest::Contains("unknown token 'relu'"));
  CHECK_THROWS_WITH(parse_head_spec("0", 2), doctest::Contains("unknown token '0'"));
  CHECK_THROWS_WITH(parse_head_spec("-5", 2), doctest::Contains("unknown token '-5'"));
  CHECK_THROWS_WITH(parse_head_spec("256,dropout=1", 2), doctest::Contains("probability in [0, 1)"));
  CHECK_THROWS_WITH(parse_head_spec("256,dropout=0.5x", 2), doctest::Contains("probability"));
  CHECK_THROWS_WITH(parse_head_spec("256,dropout=0.1,dropout=0.2", 2), doctest::Contains("twice"));
  CHECK_THROWS_WITH(parse_head_spec("dropout=0.5", 2), doctest::Contains("there are none"));
  CHECK_THROWS_WITH(parse_head_spec("256", 0), doctest::Contains("outputs must be positive"));
}

TEST_CASE("head (a): Flatten + Linear(k) on vgg16 without top, sized for the input") {
  Context ctx;
  Rng rng(7);
  Model at150;
  build_vgg16(at150, 1000, false);
  CHECK(add_head(at150, parse_head_spec("", 2), rng, {3, 150, 150}) == "head");
  CHECK(at150.parameter("head.0.weight").value.shape() == Shape{2, 512 * 4 * 4});  // the Keras seed's 8192
  CHECK(at150.find_layer("flatten") != nullptr);

  Model model;
  build_vgg16(model, 1000, false);
  CHECK_THROWS_WITH(add_head(model, parse_head_spec("", 2), rng), doctest::Contains("input_shape"));
  model.set_trainable("*", false);
  add_head(model, parse_head_spec("", 2), rng, {3, 64, 64});
  CHECK(model.parameter("head.0.weight").value.shape() == Shape{2, 512 * 2 * 2});
  CHECK(model.count_parameters(true) == 2 * 2048 + 2);
  CHECK(model.forward(ctx, images(rng, 3, 64), Mode::Eval).shape() == Shape{3, 2});
  CHECK_THROWS_WITH(add_head(model, parse_head_spec("append", 2), rng), doctest::Contains("'head'"));
}

TEST_CASE("head (b): Linear(256) + ReLU + Dropout(0.5) + Linear(1) trains with BCE, as PyTorch names it") {
  Context ctx;
  Rng rng(9);
  Model model;
  build_resnet18(model);
  model.set_trainable("*", false);
  CHECK(add_head(model, parse_head_spec("256,dropout=0.5", 1), rng) == "fc");
  CHECK(model.parameter("fc.0.weight").value.shape() == Shape{256, 512});
  CHECK(model.parameter("fc.0.bias").value.shape() == Shape{256});
  CHECK(model.parameter("fc.3.weight").value.shape() == Shape{1, 256});
  CHECK(model.find_layer("fc.1")->kind() == "ReLU");
  CHECK(model.find_layer("fc.2")->kind() == "Dropout");
  CHECK(model.count_parameters(true) == 256 * 513 + 257);

  Tensor logits = model.forward(ctx, images(rng, 2, 32), Mode::Train);
  REQUIRE(logits.shape() == Shape{2, 1});
  LossResult loss = bce_with_logits_loss(ctx, logits, Tensor::from_vector({2, 1}, std::vector<float>{1, 0}));
  model.backward(ctx, loss.dlogits);
  CHECK(model.parameter("fc.3.weight").has_grad());
  CHECK(model.parameter("fc.0.weight").has_grad());
  CHECK_FALSE(model.parameter("layer4.1.conv2.weight").has_grad());

  Model notop;
  build_vgg16(notop, 1000, false);
  add_head(notop, parse_head_spec("256,dropout=0.5", 1), rng, {3, 32, 32});
  CHECK(notop.parameter("head.0.weight").value.shape() == Shape{256, 512});
  CHECK(notop.parameter("head.3.weight").value.shape() == Shape{1, 256});
}

TEST_CASE("head (d): a Linear appended after the 1000-way classifier") {
  Context ctx;
  Rng rng(13);
  Model model;
  build_resnet18(model);
  CHECK(add_head(model, parse_head_spec("append", 3), rng) == "head");
  CHECK(model.parameter("fc.weight").value.shape() == Shape{1000, 512});
  CHECK(model.parameter("head.0.weight").value.shape() == Shape{3, 1000});
  CHECK(model.forward(ctx, images(rng, 2, 32), Mode::Eval).shape() == Shape{2, 3});

  Model deeper;
  build_resnet18(deeper);
  add_head(deeper, parse_head_spec("128,append", 3), rng);
  CHECK(deeper.parameter("head.0.weight").value.shape() == Shape{128, 1000});
  CHECK(deeper.parameter("head.2.weight").value.shape() == Shape{3, 128});

  Model notop;
  build_vgg16(notop, 1000, false);
  CHECK_THROWS_WITH(add_head(notop, parse_head_spec("append", 3), rng, {3, 32, 32}),
                    doctest::Contains("ends in a feature map"));
}
