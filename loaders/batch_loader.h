#pragma once
// Batches of decoded, transformed images, prepared by a few threads while the model works on the previous
// batch. Results are deterministic: the epoch's order comes from (seed, epoch) and each example's randomness
// from (seed, epoch, example index), so neither the number of workers nor thread scheduling changes a batch.
//
// Design, kept simple on purpose: the unit of work is one example. Workers claim the next position of the
// epoch's order, but only inside a window of `prefetch` batches past the last one handed out (that bounds
// memory), decode and transform it without holding the lock, and store the result in that position's slot.
// next() waits until every slot of the next batch is filled, then stacks it on the calling thread. One mutex
// guards all shared state; start_epoch() and the destructor wait for in-flight examples to finish, so no
// worker ever touches a slot, or the loader, after it is gone.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "loaders/dataset.h"

namespace tl {

enum class BadFilePolicy { Skip, Fatal };

struct Batch {
  Tensor images;                 // F32 [B,3,H,W]
  Tensor labels;                 // I64 [B]
  std::vector<int64_t> indices;  // dataset index of each row
};

class BatchLoader {
 public:
  // Called concurrently from the worker threads: it must not touch shared mutable state (the transforms of
  // loaders/augment.h do not). It must return a CPU F32 tensor [C,H,W], the same shape for every example.
  using Transform = std::function<Tensor(const Image&, Rng&)>;
  // Decodes and transforms on `workers` threads, `prefetch` batches ahead, batches in order. Per-example randomness
  // comes from Rng(hash of seed, epoch, index), so results do not depend on thread scheduling.
  BatchLoader(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed, int workers, Transform transform,
              BadFilePolicy policy = BadFilePolicy::Skip, int prefetch = 2);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Shuffles deterministically from (seed, epoch); abandons whatever was left of the previous epoch.
  void start_epoch(int64_t epoch);
  // false at the end of the epoch; skipped files are left out of batches and a batch left empty is not emitted.
  // With BadFilePolicy::Fatal, throws tl::Error naming the path of the first bad example of the batch (the batch
  // is consumed: a later call goes on with the next one). Throws when no epoch was started.
  bool next(Batch& batch);
  const std::vector<std::string>& bad_files() const;  // "path: reason", each reported once (stderr) and kept
  int64_t decoded_count() const;                      // files decoded successfully so far (not in-memory images)

  int64_t size() const { return static_cast<int64_t>(data_.examples.size()); }
  int64_t batches_per_epoch() const { return (size() + batch_size_ - 1) / batch_size_; }

  // The Rng an example's transform receives in an epoch.
  static uint64_t example_seed(uint64_t seed, int64_t epoch, int64_t index);

 private:
  struct Slot {  // one position of the epoch's order
    Tensor tensor;
    std::string error;  // set when loading failed
    bool done = false;
  };

  void worker_loop();
  void load(int64_t index, int64_t epoch, Slot& result) const;
  int64_t window_end() const;  // positions below it may be claimed; needs lock_
  void drain(std::unique_lock<std::mutex>& hold);  // stops claiming and waits for in-flight work; needs lock_

  const Dataset data_;
  const int64_t batch_size_;
  const bool shuffle_;
  const uint64_t seed_;
  const Transform transform_;
  const BadFilePolicy policy_;
  const int prefetch_;

  std::mutex lock_;
  std::condition_variable work_ready_;  // workers wait: a claimable position, or stop
  std::condition_variable slot_done_;   // next()/drain wait: a slot filled, or a worker went idle
  bool stop_ = false;
  bool epoch_started_ = false;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;  // dataset index at each position
  std::vector<Slot> slots_;     // one per position
  int64_t next_claim_ = 0;      // first position not yet claimed
  int64_t emitted_ = 0;         // batches handed out (or skipped) this epoch
  int busy_ = 0;                // workers loading an example right now

  std::vector<std::string> bad_files_;  // touched only by the thread calling next()
  std::set<std::string> reported_;
  mutable std::atomic<int64_t> decoded_{0};  // counted by the workers in load() (const)
  std::vector<std::thread> threads_;
};

}  // namespace tl
