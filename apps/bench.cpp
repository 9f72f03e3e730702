// tl bench: how fast tl is, measured against the device's own limits and against cuDNN and PyTorch in the same run.
// The sections are described in apps/bench.h; the method in docs/benchmarks/README.md and in every output's header.
#include <cublas_v2.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>

#include "apps/args.h"
#include "apps/bench.h"
#include "apps/commands.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "engine/error.h"

namespace tl::app {

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<int64_t> parse_batches(const std::string& text) {
  std::vector<int64_t> out;
  for (const std::string& item : split_list(text)) {
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    TL_CHECK(end && *end == '\0' && v > 0, "bench: --batches expects positive integers separated by commas, got '",
             text, "'");
    out.push_back(v);
  }
  TL_CHECK(!out.empty(), "bench: --batches is empty");
  return out;
}

// An option whose empty default means "the section's default, or the --quick one".
int int_or(const Args& args, const std::string& name, int fallback) {
  return args.get(name).empty() ? fallback : args.get_int(name);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TL_CHECK(in.good(), "bench: cannot read ", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Through a temporary and a rename, so a run stopped mid-write leaves the previous complete file.
void write_file(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  std::ofstream out(temporary, std::ios::binary);
  out << text;
  out.close();
  TL_CHECK(out.good(), "bench: cannot write ", temporary);
  TL_CHECK(std::rename(temporary.c_str(), path.c_str()) == 0, "bench: cannot rename ", temporary, " to ", path);
}

std::string command_line(int argc, char** argv) {
  std::string out = "tl bench";
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    out += " " + (a.find_first_of(" \t'\"") == std::string::npos ? a : "'" + a + "'");
  }
  return out;
}

bench::Options options_from(const Args& args, bool quick) {
  bench::Options o;
  o.models = split_list(args.get("model"));
  o.modes = split_list(args.get("modes"));
  TL_CHECK(!o.models.empty() && !o.modes.empty(), "bench: --model and --modes must not be empty");
  for (const std::string& m : o.models)
    TL_CHECK(m == "resnet18" || m == "vgg16", "bench: unknown model '", m, "' (resnet18, vgg16)");
  for (const std::string& m : o.modes)
    TL_CHECK(m == "inference" || m == "train" || m == "finetune" || m == "head", "bench: unknown mode '", m,
             "' (inference, train, finetune, head)");
  o.gpu_batches = parse_batches(args.get("batches").empty() ? (quick ? "32" : "32,64,128,256") : args.get("batches"));
  o.cpu_batch = int_or(args, "cpu-batch", quick ? 2 : 8);
  o.gpu_image = int_or(args, "image-size", 224);
  o.cpu_image = int_or(args, "image-size", quick ? 64 : 224);
  o.warmup = int_or(args, "warmup", quick ? 2 : 3);
  o.reps = int_or(args, "reps", quick ? 3 : 10);
  o.cpu_warmup = int_or(args, "cpu-warmup", 1);
  o.cpu_reps = int_or(args, "cpu-reps", quick ? 2 : 3);
  o.kernel_batch = args.get_int("kernel-batch");
  o.kernel_warmup = args.get_int("kernel-warmup");
  o.kernel_reps = int_or(args, "kernel-reps", quick ? 10 : 30);
  o.layers_batch = args.get_int("layers-batch");
  o.num_classes = args.get_int("classes");
  o.seed = static_cast<uint64_t>(args.get_int("seed"));
  TL_CHECK(args.get("tf32") == "on" || args.get("tf32") == "off", "bench: --tf32 is on or off, got '",
           args.get("tf32"), "'");
  o.tf32 = args.get("tf32") == "on";
  TL_CHECK(o.cpu_batch > 0 && o.gpu_image >= 32 && o.cpu_image >= 32 && o.kernel_batch > 0 && o.num_classes > 0,
           "bench: batch sizes and classes must be positive and the image size at least 32");
  TL_CHECK(o.warmup >= 0 && o.reps > 0 && o.cpu_warmup >= 0 && o.cpu_reps > 0 && o.kernel_warmup >= 0 &&
               o.kernel_reps > 0,
           "bench: warm-up counts must be >= 0 and repetitions > 0");
  return o;
}

// The engine's TF32 state as the run used it: the convolution setting and the cuBLAS math mode of its handle.
std::string tf32_note(Context& gpu) {
  cublasMath_t mode = CUBLAS_DEFAULT_MATH;
  std::string cublas = "unknown";
  if (cublasGetMathMode(gpu.cuda().cublas(), &mode) == CUBLAS_STATUS_SUCCESS)
    // The low bits hold the mode; higher bits are flags (CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION).
    cublas = (int(mode) & 0xF) == CUBLAS_TF32_TENSOR_OP_MATH ? "CUBLAS_TF32_TENSOR_OP_MATH (TF32 GEMMs)"
             : (int(mode) & 0xF) == CUBLAS_DEFAULT_MATH     ? "CUBLAS_DEFAULT_MATH (fp32 GEMMs)"
                                                            : str("math mode ", int(mode));
  return str("TF32 on the GPU: Context tf32 = ", gpu.tf32() ? "on" : "off",
             " (cuDNN convolutions); the engine's cuBLAS handle after the run: ", cublas);
}

}  // namespace

int run_bench(int argc, char** argv) {
  Args args("bench",
            "Benchmarks: our CUDA kernels against the copy bandwidth and cuDNN (--kernels), ResNet18 and VGG16 steps "
            "on the GPU (--models) and the CPU (--cpu), the per-layer time of a ResNet18 training step (--layers). "
            "Markdown tables on stdout; --json FILE keeps every figure. Without a section flag: all GPU sections "
            "when a CUDA device exists, else --cpu.");
  args.flag("kernels", "GPU: achieved GB/s of each memory-bound kernel on ResNet18-sized tensors vs copy and cuDNN")
      .flag("models", "GPU: images/s of inference, training, finetune and head-only steps, peak memory, roofline")
      .flag("cpu", "the model rows on the CPU backend at a small batch")
      .flag("layers", "forward and backward time of each top-level layer of one training step")
      .flag("quick", "small and short: GPU batch 32; CPU batch 2 at 64x64; fewer repetitions (for CI)")
      .option("model", "resnet18,vgg16", "models for --models and --cpu")
      .option("modes", "inference,train,finetune,head", "steps to time (finetune: resnet18 layer4+fc, vgg16 "
              "features.24 onward + classifier; head: the final Linear only)")
      .option("batches", "", "GPU batch sizes for --models (32,64,128,256; 32 with --quick)")
      .option("cpu-batch", "", "batch size for --cpu (8; 2 with --quick)")
      .option("image-size", "", "image side (224; 64 for the CPU with --quick)")
      .option("warmup", "", "GPU warm-up steps per row (3; 2 with --quick)")
      .option("reps", "", "GPU timed steps per row, the median is reported (10; 3 with --quick)")
      .option("cpu-warmup", "", "CPU warm-up steps per row (1)")
      .option("cpu-reps", "", "CPU timed steps per row (3; 2 with --quick)")
      .option("kernel-batch", "128", "batch of the ResNet18-sized tensors of --kernels")
      .option("kernel-warmup", "5", "warm-up calls per kernel")
      .option("kernel-reps", "", "timed calls per kernel (30; 10 with --quick)")
      .option("layers-device", "auto", "device of --layers: auto (cuda when present), cuda or cpu")
      .option("layers-batch", "0", "batch of --layers (0: the largest GPU batch, or the CPU batch)")
      .option("tf32", "on", "TF32 tensor cores for GPU convolutions: on (PyTorch's default) or off")
      .option("threads", "0", "CPU threads (0: all)")
      .option("classes", "1000", "outputs of the final Linear")
      .option("seed", "1", "seed of the random inputs and labels")
      .option("json", "", "also write every figure as JSON to this file")
      .option("markdown", "", "also write the markdown to this file")
      .option("render", "", "print the tables of a saved --json file instead of measuring")
      .option("reference", "", "bench/pytorch_reference.py's JSON: PyTorch's rows and the ratio tl/PyTorch per row");
  if (!args.parse(argc, argv)) return 0;

  std::unique_ptr<json::Value> reference;
  if (!args.get("reference").empty())
    reference = std::make_unique<json::Value>(json::parse(read_file(args.get("reference"))));
  auto emit = [&](const json::Value& doc) {
    std::string markdown = bench::render_markdown(doc, reference.get());
    std::fputs(markdown.c_str(), stdout);
    if (!args.get("markdown").empty()) write_file(args.get("markdown"), markdown);
  };
  if (!args.get("render").empty()) {
    emit(json::parse(read_file(args.get("render"))));
    return 0;
  }

  const bool quick = args.has("quick");
  bench::Options o = options_from(args, quick);
  bool kernels = args.has("kernels"), models = args.has("models"), cpu_rows = args.has("cpu"),
       layers = args.has("layers");
  const bool have_gpu = Context::cuda_available();
  if (!kernels && !models && !cpu_rows && !layers) {
    kernels = models = layers = have_gpu;
    cpu_rows = !have_gpu;
  }
  TL_CHECK(have_gpu || (!kernels && !models), "bench: --kernels and --models need a CUDA device, and there is none "
           "(--cpu measures the CPU backend)");
  const std::string layers_device = args.get("layers-device");
  TL_CHECK(layers_device == "auto" || layers_device == "cuda" || layers_device == "cpu",
           "bench: --layers-device is auto, cuda or cpu, got '", layers_device, "'");
  TL_CHECK(!layers || layers_device != "cuda" || have_gpu, "bench: --layers-device cuda needs a CUDA device");
  const bool layers_on_gpu = layers && layers_device != "cpu" && have_gpu;

  bench::Results results;
  const std::string command = command_line(argc, argv);
  if (!args.get("json").empty())
    results.checkpoint = [&] { write_file(args.get("json"), bench::to_json_text(bench::results_json(results, command, o))); };
  std::unique_ptr<Context> gpu, cpu;
  if (kernels || models || layers_on_gpu) {
    ContextOptions co;
    co.device = Device::CUDA;
    co.tf32 = o.tf32;
    co.seed = o.seed;
    gpu = std::make_unique<Context>(co);
    results.devices.push_back(bench::Row().text("device", "cuda").text("name", bench::describe_gpu(*gpu)).done());
  }
  if (cpu_rows || (layers && !layers_on_gpu)) {
    ContextOptions co;
    co.threads = args.get_int("threads");
    co.seed = o.seed;
    cpu = std::make_unique<Context>(co);
    results.devices.push_back(bench::Row().text("device", "cpu").text("name", bench::describe_cpu(*cpu)).done());
  }
  auto section = [&](const char* name, const std::function<void()>& run) {
    try {
      run();
    } catch (const std::exception& e) {
      results.notes.push_back(json::Value(str(name, " stopped: ", e.what())));
      std::fprintf(stderr, "tl bench: %s stopped: %s\n", name, e.what());
    }
    results.saved();
  };
  if (gpu && (models || layers_on_gpu)) section("GPU matrix rates", [&] { bench::measure_gpu_rates(*gpu, o, results); });
  if (cpu) section("CPU matrix rate", [&] { bench::measure_cpu_rates(*cpu, results); });
  if (kernels) section("--kernels", [&] { bench::run_kernels(*gpu, o, results); });
  if (models) section("--models", [&] { bench::run_models(*gpu, o, results); });
  if (cpu_rows) section("--cpu", [&] { bench::run_models(*cpu, o, results); });
  if (layers) section("--layers", [&] { bench::run_layers(layers_on_gpu ? *gpu : *cpu, o, results); });
  if (gpu) section("TF32 state", [&] { results.notes.push_back(json::Value(tf32_note(*gpu))); });

  json::Value doc = bench::results_json(results, command, o);
  if (!args.get("json").empty()) write_file(args.get("json"), bench::to_json_text(doc));
  emit(doc);
  return 0;
}

}  // namespace tl::app
