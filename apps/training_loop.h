#pragma once
// The epoch loop of tl transfer: a training pass over a BatchLoader (images through the whole model) or over cached
// features (through the head alone), evaluation with a confusion matrix, the per-epoch history (history.csv and
// history.png) and the best model by validation accuracy, saved atomically. Ctrl-C is honoured between batches.
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/context.h"
#include "engine/loss.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "loaders/batch_loader.h"

namespace tl::app {

// ---- Ctrl-C: the first SIGINT asks the loops to stop after the current batch; a second one ends the process.
void install_interrupt_handler();
bool interrupt_requested();

struct LossSpec {
  bool binary = false;          // logits [N,1]: sigmoid + binary cross-entropy, class 1 when the logit is > 0
  double label_smoothing = 0;   // softmax cross-entropy only
};

// Mean loss and d(loss)/d(logits) for logits on the context's device and host labels I64 [N] (uploaded here, as
// binary targets for a binary head). When given, `predicted` receives each row's predicted class (evaluation: the
// confusion matrix) and `correct` how many rows are right (training: counted where the logits are).
LossResult batch_loss(Context& ctx, const Tensor& logits, const Tensor& labels, const LossSpec& spec,
                      std::vector<int64_t>* predicted = nullptr, int64_t* correct = nullptr);

struct EpochResult {
  double loss = 0, accuracy = 0;
  int64_t count = 0;
  double seconds = 0, images_per_second = 0;
  bool interrupted = false;  // stopped early: the result is partial
};

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t correct = 0, count = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true class][predicted class]
  bool interrupted = false;
};

// Batches come off the loader on the host and are uploaded to the context's device (where the model must be).
// Images through the whole model in Train mode (frozen parts behave as documented in engine/layer.h).
EpochResult train_epoch(Context& ctx, Model& model, BatchLoader& loader, int64_t epoch, Optimizer& optimizer,
                        const LossSpec& spec, const std::string& label);
EvalResult evaluate(Context& ctx, Model& model, BatchLoader& loader, int64_t num_classes, const LossSpec& spec,
                    const std::string& label);

// Cached features [N,D] with labels I64 [N], on the host (rows whose features are not finite already dropped);
// mini-batches are gathered there and uploaded to the context's device, where the head must be.
struct FeatureSet {
  Tensor features, labels;
  int64_t size() const { return labels.defined() ? labels.numel() : 0; }
};
// Shuffled mini-batches (order from (seed, epoch)) through the head in Train mode.
EpochResult train_epoch_features(Context& ctx, Layer& head, const FeatureSet& data, int64_t batch_size, uint64_t seed,
                                 int64_t epoch, Optimizer& optimizer, const LossSpec& spec, const std::string& label);
EvalResult evaluate_features(Context& ctx, Layer& head, const FeatureSet& data, int64_t num_classes,
                             const LossSpec& spec, int64_t batch_size);

struct HistoryRow {
  int64_t epoch = 0;
  double train_loss = 0, train_acc = 0, val_loss = 0, val_acc = 0, lr = 0, seconds = 0;
};
// "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds", one row per epoch; atomic.
void write_history_csv(const std::string& path, const std::vector<HistoryRow>& rows);
// Accuracy and loss per epoch, train (0x1f77b4) vs val (0xff7f0e), side by side; atomic.
void write_history_png(const std::string& path, const std::vector<HistoryRow>& rows);

// The run's outputs: history after every epoch, and the best model by validation accuracy (strictly better than
// every earlier epoch). The best weights are kept in host memory (only tensors that can change: trainable parameters
// and buffers; device memory stays for the batches) so finish() can put them back; with save_each_best the checkpoint
// is also written at once.
class TrainingRun {
 public:
  TrainingRun(Context& ctx, Model& model, std::string output_dir, bool save_each_best);

  // Call once the trainable parameters are chosen, and again when more become trainable (stage 2): they join the
  // tensors a snapshot keeps.
  void track_trainable();
  // Prints the epoch line, records the row, keeps the model when its val accuracy is the best so far, rewrites
  // history.csv and history.png (at most every 2 seconds, and after the last epoch).
  void end_epoch(const HistoryRow& row, int64_t total_epochs, double images_per_second);
  // Puts the best weights back into the model and makes sure OUTPUT/model.safetensors holds them (with no epoch
  // finished, the current model is saved and marked as such). Returns the checkpoint's path.
  std::string finish(bool interrupted);

  bool has_best() const { return best_epoch_ > 0; }
  int64_t best_epoch() const { return best_epoch_; }
  double best_accuracy() const { return best_accuracy_; }
  const std::vector<HistoryRow>& history() const { return history_; }
  std::string path(const std::string& file) const;

 private:
  void save(const std::map<std::string, std::string>& extra);
  void write_history();

  Context& ctx_;
  Model& model_;
  std::string dir_;
  bool save_each_best_;
  std::vector<HistoryRow> history_;
  std::vector<std::pair<Tensor*, Tensor>> tracked_;  // live tensor, its value at the best epoch (when there is one)
  double best_accuracy_ = -1;
  int64_t best_epoch_ = 0;
  bool saved_best_ = false;
  std::chrono::steady_clock::time_point last_history_write_{};
};

}  // namespace tl::app
