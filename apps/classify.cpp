// tl classify: top-K classes of images under a converted checkpoint (tl convert) or a fine-tuned one (tl transfer).
// The architecture, head, class names and preprocessing all come from the checkpoint's metadata
// (apps/transfer_setup.h rebuilds the model from it), so there is nothing to get wrong on the command line. Runs on
// the GPU when there is one (--device). Exit status: 0 when every image was classified, 1 when any could not be read
// (each is named on stderr and skipped), 2 on a usage, weights or device error.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "apps/args.h"
#include "apps/commands.h"
#include "apps/device.h"
#include "apps/transfer_setup.h"
#include "engine/checkpoint.h"
#include "engine/context.h"
#include "engine/model.h"
#include "loaders/image.h"
#include "loaders/transforms.h"

namespace tl::app {

namespace {

struct Ranked {
  int64_t index;
  double probability;
};

// Softmax in double, then the k most probable classes, most probable first (ties: lower index first). A single
// output is a binary head (sigmoid, tl transfer --binary): class 1 with p, class 0 with 1 - p.
std::vector<Ranked> top_k(const float* logits, int64_t n, int64_t k) {
  if (n == 1) {
    double p = 1 / (1 + std::exp(-double(logits[0])));
    std::vector<Ranked> two = p >= 0.5 ? std::vector<Ranked>{{1, p}, {0, 1 - p}} : std::vector<Ranked>{{0, 1 - p}, {1, p}};
    two.resize(static_cast<size_t>(std::min<int64_t>(k, 2)));
    return two;
  }
  double peak = *std::max_element(logits, logits + n), total = 0;
  std::vector<double> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) total += p[i] = std::exp(double(logits[i]) - peak);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, n);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t a, int64_t b) { return p[a] != p[b] ? p[a] > p[b] : a < b; });
  std::vector<Ranked> out;
  for (int64_t i = 0; i < k; ++i) out.push_back({order[i], p[order[i]] / total});
  return out;
}

}  // namespace

int run_classify(int argc, char** argv) {
  Args args("classify",
            "Print the top-K classes of each image under a checkpoint written by tl convert (or tl transfer).\n"
            "Architecture, class names and preprocessing come from the checkpoint. Exit status: 0 all images\n"
            "classified, 1 some could not be read (named on stderr), 2 usage or weights error.");
  args.positional("IMAGE", "JPEG, PNG, BMP or GIF files", true)
      .option("weights", "", "checkpoint (safetensors) to classify with")
      .option("top", "5", "how many classes to print per image")
      .option("threads", "0", "CPU threads (0: all cores)")
      .option("device", "auto", "auto (the GPU when there is one) | cpu | cuda");
  Model model;
  EvalGeometry geometry;
  int64_t top = 5;
  std::unique_ptr<Context> owned_ctx;
  try {
    if (!args.parse(argc, argv)) return 0;
    TL_CHECK(!args.get("weights").empty(), "classify: --weights FILE is required");
    top = args.get_int("top");
    TL_CHECK(top > 0, "classify: --top must be positive, got ", top);
    Device device = device_from_option(args.get("device"));
    owned_ctx = std::make_unique<Context>(job_context_options(device, 0, args.get_int("threads")));
    auto start = std::chrono::steady_clock::now();
    // A converted checkpoint (tl convert) or a fine-tuned one with its head (tl transfer), rebuilt from its metadata.
    load_saved_model(args.get("weights"), model);
    move_model(*owned_ctx, model);
    geometry = eval_geometry_from_metadata(model.metadata);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s: %s, %zu class names%s, loaded in %.2f s\n", args.get("weights").c_str(),
                model.architecture.c_str(), model.class_names.size(),
                model.class_names.empty() ? " (indices shown)" : "", seconds);
  } catch (const Error& e) {
    // Usage errors already start with "classify: "; weights errors start with the file's path.
    std::string message = e.what();
    std::fprintf(stderr, "tl %s%s\n", message.rfind("classify: ", 0) == 0 ? "" : "classify: ", message.c_str());
    return 2;
  }

  Context& ctx = *owned_ctx;
  int failed = 0;
  for (const std::string& path : args.rest()) {
    Tensor x;
    try {
      x = geometry(decode_image(path));
    } catch (const Error& e) {
      std::fprintf(stderr, "tl classify: skipped %s\n", e.what());  // the message starts with the path
      ++failed;
      continue;
    }
    Tensor logits;
    try {
      logits = model.forward(ctx, to_job_device(ctx, x.reshape({1, x.size(0), x.size(1), x.size(2)})), Mode::Eval)
                   .to(ctx, Device::CPU);
    } catch (const Error& e) {  // out of device memory, say: one line, and the status of a weights error
      std::fprintf(stderr, "tl classify: %s\n", e.what());
      return 2;
    }
    if (logits.dim() != 2) {
      std::fprintf(stderr, "tl classify: %s: the model outputs %s, not class scores (a feature extractor?)\n",
                   args.get("weights").c_str(), shape_str(logits.shape()).c_str());
      return 2;
    }
    std::printf("%s\n", path.c_str());
    for (const Ranked& r : top_k(logits.data<float>(), logits.size(1), top)) {
      std::string name = r.index < static_cast<int64_t>(model.class_names.size())
                             ? model.class_names[static_cast<size_t>(r.index)]
                             : str("class ", r.index);
      std::printf("  %6.2f%%  %4lld  %s\n", 100 * r.probability, static_cast<long long>(r.index), name.c_str());
    }
    std::fflush(stdout);
  }
  return failed ? 1 : 0;
}

}  // namespace tl::app
