#pragma once
// tl bench: the sections and what they share. Every section appends rows (JSON objects) to a Results; the
// markdown table and the --json file are both made from those rows (bench_report.cpp), so a JSON file read back
// renders exactly as the run printed it.
//
//   --kernels  (GPU) bench_kernels.cpp, cases in bench_kernel_cases.cpp, cuDNN references in bench_cudnn.h
//   --models   (GPU) and --cpu (CPU): bench_models.cpp
//   --layers   per-layer breakdown of one ResNet18 training step: bench_layers.cpp
//   matrix rates and copy bandwidth: bench_rates.cpp
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/model.h"
#include "weights/json.h"

namespace tl::app::bench {

struct Options {
  std::vector<std::string> models = {"resnet18", "vgg16"};
  std::vector<std::string> modes = {"inference", "train", "finetune", "head"};
  std::vector<int64_t> gpu_batches = {32, 64, 128, 256};
  int64_t cpu_batch = 8;
  int64_t gpu_image = 224, cpu_image = 224;
  int warmup = 3, reps = 10;              // model rows and the layer breakdown (CPU: see bench.cpp)
  int cpu_warmup = 1, cpu_reps = 3;
  int kernel_warmup = 5, kernel_reps = 30;
  int64_t kernel_batch = 128;
  int64_t layers_batch = 0;               // 0: the largest GPU batch, or the CPU batch
  std::string layers_model = "resnet18";
  int64_t num_classes = 1000;
  bool tf32 = true;
  uint64_t seed = 1;
};

// A JSON object under construction, fields in insertion order.
class Row {
 public:
  Row& text(const std::string& key, const std::string& value);
  Row& number(const std::string& key, double value);  // non-finite values become null
  Row& integer(const std::string& key, int64_t value);
  Row& boolean(const std::string& key, bool value);
  Row& null(const std::string& key);
  Row& value(const std::string& key, json::Value value);
  json::Value done() { return json::Value(std::move(fields_)); }

 private:
  json::Object fields_;
};

// A measured matrix-multiply rate, the denominator of the roofline fraction.
struct MatrixRate {
  std::string device;     // "cuda" or "cpu"
  std::string precision;  // "fp32", "tf32", "bf16"
  double tflops = 0;
  std::string how;        // what was measured
};

struct Results {
  std::vector<MatrixRate> matrix_rates;
  json::Array devices;      // {"device": "cuda", "name": ...}
  json::Array copy;         // copy bandwidth rows
  json::Array models;
  json::Array kernels;
  json::Array layers;
  json::Array notes;        // strings
  // Called after every row, so a run stopped by a time limit keeps what it measured (bench.cpp rewrites --json).
  std::function<void()> checkpoint;
  void saved() const {
    if (checkpoint) checkpoint();
  }
  // The rate a row at this device and precision is measured against; 0 when not measured.
  double rate(const std::string& device, const std::string& precision) const;
};

// ---- model setup shared by --models, --cpu and --layers
// Builds resnet18 or vgg16 with num_classes outputs on the CPU (PyTorch's default initialisation, fixed seed).
void build_model(Model& model, const std::string& name, int64_t num_classes);
// Sets what trains for a mode: "inference" (nothing), "train" (everything), "finetune" (resnet18: layer4 + fc;
// vgg16: features.24 onward + classifier), "head" (the final Linear: fc or classifier.6).
void set_mode(Model& model, const std::string& model_name, const std::string& mode);
// "finetune layer4+fc" and the like, for tables.
std::string mode_label(const std::string& model_name, const std::string& mode);
bool is_training_mode(const std::string& mode);
// Random inputs in [-1, 1) and labels in [0, classes) on the context's device.
Tensor random_images(Context& ctx, int64_t batch, int64_t size, uint64_t seed);
Tensor random_labels(Context& ctx, int64_t batch, int64_t classes, uint64_t seed);

// ---- sections
void measure_cpu_rates(Context& cpu, Results& results);
void measure_gpu_rates(Context& gpu, const Options& options, Results& results);  // GEMMs and copy bandwidth
std::string describe_gpu(Context& gpu);
std::string describe_cpu(Context& cpu);
int64_t gpu_l2_bytes(Context& gpu);
// Copy bandwidth (cudaMemcpyAsync device to device) over `bytes`, GB/s counting read + write.
double measure_copy_gbs(Context& gpu, int64_t bytes, int warmup, int reps);

void run_models(Context& ctx, const Options& options, Results& results);
void run_layers(Context& ctx, const Options& options, Results& results);
void run_kernels(Context& gpu, const Options& options, Results& results);

// ---- report
json::Value results_json(const Results& results, const std::string& command, const Options& options);
std::string to_json_text(const json::Value& value);
// The markdown tables; with a reference (bench/pytorch_reference.py's JSON), its rows beside ours and the ratio
// ours/theirs of images per second.
std::string render_markdown(const json::Value& ours, const json::Value* reference);

}  // namespace tl::app::bench
