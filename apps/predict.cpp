// tl predict MODEL IMAGE|FOLDER...: the class and probability of each image under a model written by tl transfer
// (or tl convert). Structure, class names and preprocessing come from the checkpoint's metadata, with the evaluation
// geometry transfer validated with, and images are batched the way transfer evaluates them, so predicting the val
// folder reproduces the val accuracy transfer printed. Folders are searched recursively for images (torchvision's
// extensions); when a folder's sub-folders are named like the model's classes, the accuracy over them is printed.
// Runs on the GPU when there is one (--device). Exit status: 0 all images predicted, 1 some could not be read (named
// on stderr), 2 usage, model or device error (out of device memory: lower --batch-size).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "apps/args.h"
#include "apps/commands.h"
#include "apps/device.h"
#include "apps/transfer_setup.h"
#include "engine/context.h"
#include "engine/error.h"
#include "loaders/batch_loader.h"
#include "loaders/image_folder.h"
#include "report/png_writer.h"

namespace tl::app {

namespace fs = std::filesystem;

namespace {

struct Input {
  std::string path;
  int64_t label = -1;  // a class index when the file sits under a sub-folder named like a class
  int root = -1;       // which folder argument it came from (-1: named directly)
};

bool is_image_name(const std::string& name) {
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const std::string& e : default_image_extensions())
    if (lower.size() > e.size() && lower.compare(lower.size() - e.size(), e.size(), e) == 0) return true;
  return false;
}

// Every image file under `dir`, entries in byte order, sub-folders followed; hidden entries skipped.
void scan(const fs::path& dir, std::vector<std::string>& files) {
  std::vector<fs::directory_entry> entries;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(*it);
  TL_CHECK(!ec, "predict: cannot list ", dir.string(), ": ", ec.message());
  std::sort(entries.begin(), entries.end(),
            [](auto& a, auto& b) { return a.path().filename().string() < b.path().filename().string(); });
  for (const fs::directory_entry& e : entries) {
    std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (e.is_directory(ec)) scan(e.path(), files);
    else if (e.is_regular_file(ec) && is_image_name(name)) files.push_back(e.path().string());
  }
}

std::vector<Input> collect_inputs(const std::vector<std::string>& arguments, const std::vector<std::string>& classes,
                                  std::vector<bool>* labelled_root) {
  std::vector<Input> inputs;
  std::map<std::string, int64_t> class_index;
  for (size_t i = 0; i < classes.size(); ++i) class_index[classes[i]] = static_cast<int64_t>(i);
  for (size_t a = 1; a < arguments.size(); ++a) {
    const std::string& arg = arguments[a];
    std::error_code ec;
    labelled_root->push_back(false);
    if (!fs::is_directory(arg, ec)) {
      inputs.push_back({arg, -1, -1});
      continue;
    }
    std::vector<std::string> files;
    scan(arg, files);
    for (const std::string& f : files) {
      Input in{f, -1, static_cast<int>(a)};
      fs::path relative = fs::path(f).lexically_relative(arg);
      auto first = relative.begin();
      if (std::distance(relative.begin(), relative.end()) >= 2) {
        auto it = class_index.find(first->string());
        if (it != class_index.end()) {
          in.label = it->second;
          (*labelled_root)[a - 1] = true;
        }
      }
      inputs.push_back(in);
    }
    if (files.empty()) std::fprintf(stderr, "tl predict: %s: no image files\n", arg.c_str());
  }
  return inputs;
}

struct Ranked {
  int64_t index;
  double probability;
};

// Most probable first (ties: lower index first); the first is also the logits' argmax, as transfer counts it.
std::vector<Ranked> rank(const float* logits, int64_t n, bool binary, int64_t k) {
  std::vector<double> p;
  if (binary) {
    double one = 1 / (1 + std::exp(-double(logits[0])));
    p = {1 - one, one};
  } else {
    double peak = *std::max_element(logits, logits + n), total = 0;
    for (int64_t i = 0; i < n; ++i) total += std::exp(double(logits[i]) - peak);
    for (int64_t i = 0; i < n; ++i) p.push_back(std::exp(double(logits[i]) - peak) / total);
  }
  int64_t best = binary ? (logits[0] > 0 ? 1 : 0) : std::max_element(logits, logits + n) - logits;
  std::vector<int64_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (a == best || b == best) return a == best && b != best;
    return p[a] > p[b];
  });
  std::vector<Ranked> out;
  for (int64_t i = 0; i < std::min<int64_t>(k, static_cast<int64_t>(order.size())); ++i)
    out.push_back({order[i], p[order[i]]});
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

int run_predict(int argc, char** argv) {
  Args args("predict",
            "Predict the class of images under a model written by tl transfer (or tl convert).\n"
            "Folders are searched recursively for images (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp); when\n"
            "their sub-folders are named like the model's classes, the accuracy over them is printed too.\n"
            "Exit status: 0 all images predicted, 1 some could not be read (named on stderr), 2 usage, model or\n"
            "device error (out of device memory: lower --batch-size).");
  args.positional("MODEL", "checkpoint (safetensors) written by tl transfer")
      .positional("IMAGE|FOLDER", "image files and folders of images", true)
      .option("top", "1", "how many classes to print per image")
      .option("csv", "", "also write the predictions to this CSV file")
      .option("batch-size", "32", "images per forward pass")
      .option("threads", "0", "CPU threads (0: all cores)")
      .option("workers", "2", "image decoding threads")
      .option("device", "auto", "auto (the GPU when there is one) | cpu | cuda");
  Model model;
  EvalGeometry geometry;
  std::vector<Input> inputs;
  std::vector<bool> labelled_root;
  int64_t top = 1, batch_size = 32;
  std::unique_ptr<Context> owned_ctx;
  try {
    if (!args.parse(argc, argv)) return 0;
    TL_CHECK(args.rest().size() >= 2, "predict: expected MODEL and at least one IMAGE or FOLDER");
    top = args.get_int("top");
    batch_size = args.get_int("batch-size");
    TL_CHECK(top > 0 && batch_size > 0, "predict: --top and --batch-size must be positive");
    TL_CHECK(args.get_int("workers") > 0, "predict: --workers must be positive");
    Device device = device_from_option(args.get("device"));
    owned_ctx = std::make_unique<Context>(job_context_options(device, 0, args.get_int("threads")));
    load_saved_model(args.rest()[0], model);
    move_model(*owned_ctx, model);
    geometry = eval_geometry_from_metadata(model.metadata);
    inputs = collect_inputs(args.rest(), model.class_names, &labelled_root);
  } catch (const Error& e) {
    std::string message = e.what();
    std::fprintf(stderr, "tl %s%s\n", message.rfind("predict: ", 0) == 0 ? "" : "predict: ", message.c_str());
    return 2;
  }
  Context& ctx = *owned_ctx;
  bool binary = model.metadata.count("head.binary") && model.metadata.at("head.binary") == "true";
  auto class_name = [&](int64_t i) {
    return i < static_cast<int64_t>(model.class_names.size()) ? model.class_names[static_cast<size_t>(i)]
                                                              : str("class ", i);
  };
  std::printf("%s: %s, %zu classes, %zu images\n", args.rest()[0].c_str(), model.architecture.c_str(),
              model.class_names.size(), inputs.size());

  Dataset data;
  data.classes = model.class_names;
  for (const Input& in : inputs) data.examples.push_back({in.path, nullptr, std::max<int64_t>(in.label, 0)});
  BatchLoader loader(data, batch_size, false, 0, args.get_int("workers"),
                     [&geometry](const Image& image, Rng&) { return geometry(image); });
  loader.start_epoch(0);
  std::vector<int64_t> correct(args.rest().size(), 0), counted(args.rest().size(), 0);
  std::string csv = "path,label";
  for (int64_t k = 1; k <= top; ++k) csv += str(",class_", k, ",probability_", k);
  csv += "\n";
  Batch batch;
  while (true) {
    Tensor logits;
    try {
      if (!loader.next(batch)) break;
      logits = model.forward(ctx, to_job_device(ctx, batch.images), Mode::Eval).to(ctx, Device::CPU);
    } catch (const Error& e) {  // out of device memory, say: one line, and the status of a usage error
      std::fprintf(stderr, "tl predict: %s\n", e.what());
      return 2;
    }
    int64_t width = logits.numel() / logits.size(0);
    for (size_t r = 0; r < batch.indices.size(); ++r) {
      const Input& in = inputs[static_cast<size_t>(batch.indices[r])];
      std::vector<Ranked> ranked = rank(logits.data<float>() + r * width, width, binary, top);
      std::string line = in.path + ":";
      csv += csv_field(in.path) + "," + (in.label >= 0 ? csv_field(class_name(in.label)) : std::string());
      for (const Ranked& x : ranked) {
        char p[32];
        std::snprintf(p, sizeof p, "%.4f", x.probability);
        line += str(" ", class_name(x.index), " ", p);
        csv += str(",", csv_field(class_name(x.index)), ",", p);
      }
      csv += "\n";
      std::printf("%s\n", line.c_str());
      if (in.label >= 0 && in.root >= 0) {
        counted[static_cast<size_t>(in.root)] += 1;
        correct[static_cast<size_t>(in.root)] += ranked[0].index == in.label;
      }
    }
  }
  for (size_t a = 1; a < args.rest().size(); ++a) {
    if (!labelled_root[a - 1] || counted[a] == 0) continue;
    std::printf("accuracy %.4f (%lld/%lld) over %s\n", double(correct[a]) / counted[a],
                static_cast<long long>(correct[a]), static_cast<long long>(counted[a]), args.rest()[a].c_str());
  }
  size_t failed = loader.bad_files().size();
  if (!args.get("csv").empty()) {
    report::write_file_atomically(args.get("csv"), csv.data(), csv.size());
    std::printf("wrote %s\n", args.get("csv").c_str());
  }
  if (failed) std::fprintf(stderr, "tl predict: %zu of %zu files could not be read (named above) and were skipped\n",
                           failed, inputs.size());
  return failed ? 1 : 0;
}

}  // namespace tl::app
