#include "layers/models/heads.h"

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <optional>
#include <sstream>

#include "engine/error.h"
#include "kernels/conv2d.h"
#include "kernels/pool2d.h"
#include "layers/adaptive_avgpool2d.h"
#include "layers/conv2d.h"
#include "layers/dropout.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/maxpool2d.h"
#include "layers/relu.h"

namespace tl {

namespace {

std::string trim(const std::string& s) {
  size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

bool parse_positive_int(const std::string& token, int64_t& out) {
  if (token.empty() || token.size() > 12) return false;
  for (char c : token)
    if (c < '0' || c > '9') return false;
  out = std::stoll(token);
  return out > 0;
}

bool parse_probability(const std::string& text, double& out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(text.c_str(), &end);
  return errno == 0 && end == text.c_str() + text.size() && out >= 0.0 && out < 1.0;
}

// The shortest decimal that reads back as exactly `value` ("0.5", not "0.50000000000000000").
std::string shortest_decimal(double value) {
  for (int digits = 1;; ++digits) {
    std::ostringstream out;
    out.precision(digits);
    out << value;
    if (digits >= 17 || std::strtod(out.str().c_str(), nullptr) == value) return out.str();
  }
}

void check_spec(const HeadSpec& spec) {
  TL_CHECK(spec.outputs > 0, "head: the final Linear needs a positive width, got ", spec.outputs);
  for (int64_t width : spec.hidden) TL_CHECK(width > 0, "head: hidden width ", width, " must be positive");
  TL_CHECK(spec.dropout >= 0.0 && spec.dropout < 1.0, "head: dropout ", spec.dropout, " must be in [0, 1)");
}

std::unique_ptr<Linear> fresh_linear(int64_t in, int64_t out, Rng& rng) {
  auto linear = std::make_unique<Linear>(in, out);
  linear->reset_parameters(rng);
  return linear;
}

// hidden Linear+ReLU(+Dropout) layers then the final Linear, named 0, 1, 2, ... as nn.Sequential names them.
std::unique_ptr<Sequential> make_head(int64_t in, const HeadSpec& spec, Rng& rng) {
  auto head = std::make_unique<Sequential>();
  int index = 0;
  for (int64_t width : spec.hidden) {
    head->add(std::to_string(index++), fresh_linear(in, width, rng));
    head->emplace<ReLU>(std::to_string(index++));
    if (spec.dropout > 0) head->emplace<Dropout>(std::to_string(index++), spec.dropout);
    in = width;
  }
  head->add(std::to_string(index), fresh_linear(in, spec.outputs, rng));
  return head;
}

struct LinearSite {
  std::string path;         // "fc", "classifier.6"
  Sequential* parent;       // the container holding it
  std::string local_name;   // its name inside the parent
  Linear* linear;
};

// The Linear that ends the model: the last Linear in layer order with no parameterised layer after it.
std::optional<LinearSite> final_linear(Model& model) {
  std::string path;
  Linear* found = nullptr;
  model.visit_layers([&](const std::string& p, Layer& layer) {
    if (auto* linear = dynamic_cast<Linear*>(&layer)) {
      found = linear;
      path = p;
    } else if (!layer.local_parameters().empty()) {
      found = nullptr;
    }
  });
  if (!found) return std::nullopt;
  size_t dot = path.rfind('.');
  std::string parent_path = dot == std::string::npos ? "" : path.substr(0, dot);
  std::string local = dot == std::string::npos ? path : path.substr(dot + 1);
  auto* parent = dynamic_cast<Sequential*>(model.find_layer(parent_path));
  TL_CHECK(parent != nullptr, "head: the final Linear '", path, "' is not inside a Sequential, so it cannot be replaced");
  return LinearSite{path, parent, local, found};
}

Shape output_shape(Layer& layer, const Shape& in);

Shape fold_children(Layer& layer, Shape shape, const char* skip) {
  for (auto& [name, child] : layer.children())
    if (name != skip) shape = output_shape(*child, shape);
  return shape;
}

Shape output_shape(Layer& layer, const Shape& in) {
  const std::string& kind = layer.kind();
  auto where = [&] { return str("layer ", layer.path().empty() ? "(root)" : layer.path(), " (", kind, ")"); };
  if (kind == "Sequential") return fold_children(layer, in, "");
  // The residual sum has the main branch's shape; downsample runs beside it.
  if (kind == "BasicBlock") return fold_children(layer, in, "downsample");
  if (kind == "ReLU" || kind == "BatchNorm2d" || kind == "Dropout") return in;
  if (kind == "Flatten") {
    TL_CHECK(!in.empty(), where(), ": cannot flatten a scalar");
    return {shape_numel(in)};
  }
  if (auto* linear = dynamic_cast<Linear*>(&layer)) {
    const Shape& w = linear->weight.value.shape();
    TL_CHECK(in.size() == 1 && in[0] == w[1], where(), ": input ", shape_str(in), " expected [", w[1], "]");
    return {w[0]};
  }
  TL_CHECK(in.size() == 3, where(), ": input ", shape_str(in), " is not a [C,H,W] feature map");
  if (auto* conv = dynamic_cast<Conv2d*>(&layer)) {
    const Shape& w = conv->weight.value.shape();
    TL_CHECK(in[0] == w[1], where(), ": input ", shape_str(in), " has ", in[0], " channels, expected ", w[1]);
    const Conv2dParams& p = conv->params();
    return {w[0], conv2d_output_size(in[1], w[2], p.stride_h, p.pad_h), conv2d_output_size(in[2], w[3], p.stride_w, p.pad_w)};
  }
  if (auto* pool = dynamic_cast<MaxPool2d*>(&layer)) {
    const Pool2dParams& p = pool->params();
    return {in[0], pool2d_output_size(in[1], p.kernel_h, p.stride_h, p.pad_h),
            pool2d_output_size(in[2], p.kernel_w, p.stride_w, p.pad_w)};
  }
  if (auto* pool = dynamic_cast<AdaptiveAvgPool2d*>(&layer)) return {in[0], pool->out_h(), pool->out_w()};
  throw Error(str(where(), ": output shape unknown to model_output_shape"));
}

}  // namespace

HeadSpec parse_head_spec(const std::string& text, int64_t outputs) {
  HeadSpec spec;
  spec.outputs = outputs;
  bool dropout_seen = false;
  std::string body = trim(text);
  if (!body.empty()) {
    std::stringstream tokens(body);
    std::string token;
    while (std::getline(tokens, token, ',')) {
      token = trim(token);
      int64_t width = 0;
      if (parse_positive_int(token, width)) {
        spec.hidden.push_back(width);
      } else if (token.rfind("dropout=", 0) == 0) {
        TL_CHECK(!dropout_seen, "head spec '", text, "': dropout given twice");
        TL_CHECK(parse_probability(token.substr(8), spec.dropout), "head spec '", text, "': '", token,
                 "' needs a probability in [0, 1)");
        dropout_seen = true;
      } else if (token == "append") {
        spec.append = true;
      } else {
        throw Error(str("head spec '", text, "': unknown token '", token,
                        "' (expected a hidden width such as 256, dropout=P or append)"));
      }
    }
    TL_CHECK(body.back() != ',', "head spec '", text, "': empty token after the last comma");
  }
  TL_CHECK(!dropout_seen || !spec.hidden.empty(), "head spec '", text,
           "': dropout applies after hidden layers, and there are none");
  TL_CHECK(outputs > 0, "head spec '", text, "': the number of outputs must be positive, got ", outputs);
  return spec;
}

std::string format_head_spec(const HeadSpec& spec) {
  std::vector<std::string> tokens;
  for (int64_t width : spec.hidden) tokens.push_back(std::to_string(width));
  if (spec.dropout > 0) tokens.push_back("dropout=" + shortest_decimal(spec.dropout));
  if (spec.append) tokens.push_back("append");
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) out += (i ? "," : "") + tokens[i];
  return out;
}

std::string add_head(Model& model, const HeadSpec& spec, Rng& rng, const Shape& input_shape) {
  check_spec(spec);
  Sequential& root = model.root();
  std::optional<LinearSite> site = final_linear(model);
  std::string name;
  if (spec.append) {
    TL_CHECK(site.has_value(), "add_head: 'append' needs a model that ends with a Linear classifier; this ",
             model.architecture, " ends in a feature map (build it with its top, or drop 'append')");
    TL_CHECK(root.find("head") == nullptr, "add_head: the model already has a layer named 'head'");
    root.add("head", make_head(site->linear->weight.value.size(0), spec, rng));
    name = "head";
  } else if (site.has_value()) {
    int64_t in = site->linear->weight.value.size(1);
    if (spec.hidden.empty())
      site->parent->replace(site->local_name, fresh_linear(in, spec.outputs, rng));
    else
      site->parent->replace(site->local_name, make_head(in, spec, rng));
    name = site->path;
  } else {
    TL_CHECK(!input_shape.empty(), "add_head: this ", model.architecture,
             " ends in a feature map whose flattened width depends on the image size; pass input_shape {C,H,W}");
    TL_CHECK(root.find("head") == nullptr, "add_head: the model already has a layer named 'head'");
    model.assign_paths();  // error messages of the shape walk name layers by path
    Shape features = model_output_shape(model, input_shape);
    if (features.size() > 1) {
      TL_CHECK(root.find("flatten") == nullptr, "add_head: the model already has a layer named 'flatten'");
      root.emplace<Flatten>("flatten");
    }
    root.add("head", make_head(shape_numel(features), spec, rng));
    name = "head";
  }
  model.assign_paths();
  return name;
}

void replace_head(Model& model, int64_t num_classes, Rng& rng) {
  TL_CHECK(num_classes > 0, "replace_head: num_classes must be positive, got ", num_classes);
  std::optional<LinearSite> site = final_linear(model);
  TL_CHECK(site.has_value(), "replace_head: this ", model.architecture,
           " ends in no Linear classifier to replace (a model without top: use add_head)");
  site->parent->replace(site->local_name, fresh_linear(site->linear->weight.value.size(1), num_classes, rng));
  model.assign_paths();
}

Shape model_output_shape(Model& model, const Shape& input_shape) {
  model.assign_paths();
  return output_shape(model.root(), input_shape);
}

void set_torchvision_preprocessing(Model& model) {
  model.metadata["preprocessing.color"] = "RGB";
  model.metadata["preprocessing.scale"] = "1";
  model.metadata["preprocessing.mean"] = "0.485,0.456,0.406";
  model.metadata["preprocessing.std"] = "0.229,0.224,0.225";
  model.metadata["preprocessing.resize"] = "256";
  model.metadata["preprocessing.crop"] = "224";
}

}  // namespace tl
