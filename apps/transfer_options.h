#pragma once
// Everything `tl transfer MODE` was asked to do, parsed and defaulted (apps/transfer.cpp), and the job that runs it
// (apps/transfer_modes.cpp).
#include <cstdint>
#include <string>

#include "apps/transfer_data.h"
#include "apps/transfer_setup.h"
#include "engine/dtype.h"
#include "loaders/augment.h"

namespace tl::app {

enum class TransferMode { Extract, Finetune, TwoStage, Full };
const char* mode_name(TransferMode mode);

struct OptimizerOptions {
  std::string name = "sgd";  // sgd | adam | adamw | rmsprop
  double lr = 0.01, momentum = 0.9, weight_decay = 0, decay = 0;
  bool nesterov = false;
  std::string schedule = "none";  // none | step:SIZE:GAMMA | cosine
};

struct TransferOptions {
  TransferMode mode = TransferMode::Extract;
  ModelOptions model;
  bool resize_auto = false;  // model.resize is chosen once the data's format is known
  DataOptions data;
  OptimizerOptions optimizer;
  int64_t epochs = 10, batch_size = 32;
  double label_smoothing = 0;
  // finetune's selection (at most one), two-stage's stage 2 (unfreeze_from)
  std::string train_globs, unfreeze_from;
  int train_last = 0;
  int64_t stage1_epochs = 5, stage2_epochs = 5;
  double stage2_lr = 0;  // two-stage: 0 = lr / 10
  Augmentation augmentation;
  std::string augment_style = "none";  // what was chosen, for the log
  bool augmentation_ignored = false;   // extract mode was given augmentation options
  uint64_t seed = 1;
  int threads = 0, workers = 2;
  Device device = Device::CPU;  // from --device (auto: CUDA when a device exists)
  std::string output, cache_dir, export_path;
  bool strict = false;
};

// Runs the whole job: data, model, training, outputs. Returns the exit status (0, or 130 after Ctrl-C).
int run_transfer_job(const TransferOptions& options);

}  // namespace tl::app
