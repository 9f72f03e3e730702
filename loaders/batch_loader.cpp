#include "loaders/batch_loader.h"

#include <algorithm>
#include <cstring>
#include <iostream>
#include <numeric>

#include "engine/error.h"
#include "loaders/image.h"

namespace tl {

namespace {

// Distinct streams for the shuffle and for the examples' transforms, so that neither repeats the other.
constexpr uint64_t kShuffleSalt = 0x73687566666c6521ull;  // "shuffle!"
constexpr uint64_t kExampleSalt = 0x6578616d706c6521ull;  // "example!"

// "path: reason"; decode errors already start with the path.
std::string bad_file_entry(const std::string& path, const std::string& error) {
  return error.compare(0, path.size() + 2, path + ": ") == 0 ? error : path + ": " + error;
}

}  // namespace

uint64_t BatchLoader::example_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return hash_u64(hash_u64(seed ^ kExampleSalt, static_cast<uint64_t>(epoch)), static_cast<uint64_t>(index));
}

BatchLoader::BatchLoader(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed, int workers,
                         Transform transform, BadFilePolicy policy, int prefetch)
    : data_(data),
      batch_size_(batch_size),
      shuffle_(shuffle),
      seed_(seed),
      transform_(std::move(transform)),
      policy_(policy),
      prefetch_(prefetch) {
  TL_CHECK(batch_size >= 1, "BatchLoader: batch size must be >= 1, got ", batch_size);
  TL_CHECK(workers >= 1 && workers <= 256, "BatchLoader: workers must be in 1..256, got ", workers);
  TL_CHECK(prefetch >= 1, "BatchLoader: prefetch must be >= 1 batch, got ", prefetch);
  TL_CHECK(static_cast<bool>(transform_), "BatchLoader: no transform given");
  for (const Example& ex : data_.examples) {
    TL_CHECK(ex.label >= 0 && (data_.classes.empty() || ex.label < static_cast<int64_t>(data_.classes.size())),
             "BatchLoader: ", ex.path, " has label ", ex.label, " but the dataset has ", data_.classes.size(),
             " classes");
  }
  try {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
  } catch (...) {
    {
      std::lock_guard<std::mutex> hold(lock_);
      stop_ = true;
    }
    work_ready_.notify_all();
    for (std::thread& t : threads_) t.join();
    throw;
  }
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> hold(lock_);
    stop_ = true;
  }
  work_ready_.notify_all();
  // A worker in the middle of an example finishes it (the slots are still alive) and then sees stop_.
  for (std::thread& t : threads_) t.join();
}

int64_t BatchLoader::window_end() const {
  if (!epoch_started_) return 0;
  return std::min(size(), (emitted_ + prefetch_) * batch_size_);
}

void BatchLoader::drain(std::unique_lock<std::mutex>& hold) {
  epoch_started_ = false;  // window_end() is 0: nothing more is claimed
  slot_done_.wait(hold, [&] { return busy_ == 0; });
}

void BatchLoader::start_epoch(int64_t epoch) {
  std::unique_lock<std::mutex> hold(lock_);
  drain(hold);
  order_.resize(static_cast<size_t>(size()));
  std::iota(order_.begin(), order_.end(), int64_t(0));
  if (shuffle_) {
    Rng rng(hash_u64(seed_ ^ kShuffleSalt, static_cast<uint64_t>(epoch)));
    for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng.below(i)]);
  }
  slots_.assign(order_.size(), Slot{});
  next_claim_ = 0;
  emitted_ = 0;
  epoch_ = epoch;
  epoch_started_ = true;
  hold.unlock();
  work_ready_.notify_all();
}

void BatchLoader::worker_loop() {
  std::unique_lock<std::mutex> hold(lock_);
  while (true) {
    work_ready_.wait(hold, [&] { return stop_ || next_claim_ < window_end(); });
    if (stop_) return;
    const int64_t position = next_claim_++;
    const int64_t index = order_[static_cast<size_t>(position)], epoch = epoch_;
    ++busy_;
    hold.unlock();
    Slot result;
    load(index, epoch, result);
    hold.lock();
    --busy_;
    // slots_ cannot have been replaced: start_epoch() waits for busy_ == 0 first.
    result.done = true;
    slots_[static_cast<size_t>(position)] = std::move(result);
    slot_done_.notify_all();
  }
}

void BatchLoader::load(int64_t index, int64_t epoch, Slot& result) const {
  const Example& ex = data_.examples[static_cast<size_t>(index)];
  try {
    Rng rng(example_seed(seed_, epoch, index));
    if (ex.image) {
      result.tensor = transform_(*ex.image, rng);
    } else {
      Image image = decode_image(ex.path);
      decoded_.fetch_add(1, std::memory_order_relaxed);
      result.tensor = transform_(image, rng);
    }
  } catch (const std::exception& e) {
    result.error = *e.what() ? e.what() : "unknown error";
  } catch (...) {
    result.error = "unknown exception";
  }
}

bool BatchLoader::next(Batch& batch) {
  std::unique_lock<std::mutex> hold(lock_);
  TL_CHECK(epoch_started_, "BatchLoader: call start_epoch() before next()");
  while (emitted_ < batches_per_epoch()) {
    const int64_t begin = emitted_ * batch_size_, end = std::min(size(), begin + batch_size_);
    slot_done_.wait(hold, [&] {
      for (int64_t p = begin; p < end; ++p) {
        if (!slots_[static_cast<size_t>(p)].done) return false;
      }
      return true;
    });
    std::vector<Slot> taken;
    std::vector<int64_t> indices;
    for (int64_t p = begin; p < end; ++p) {
      taken.push_back(std::move(slots_[static_cast<size_t>(p)]));
      indices.push_back(order_[static_cast<size_t>(p)]);
    }
    ++emitted_;
    hold.unlock();
    work_ready_.notify_all();  // the window moved

    std::vector<size_t> good;
    for (size_t i = 0; i < taken.size(); ++i) {
      if (taken[i].error.empty()) {
        good.push_back(i);
        continue;
      }
      const std::string& path = data_.examples[static_cast<size_t>(indices[i])].path;
      std::string entry = bad_file_entry(path, taken[i].error);
      bool first_time = reported_.insert(path).second;
      if (first_time) bad_files_.push_back(entry);
      if (policy_ == BadFilePolicy::Fatal) throw Error(str("BatchLoader: bad example ", entry));
      if (first_time) std::cerr << "skipping " << entry << "\n";
    }
    if (good.empty()) {
      hold.lock();
      continue;  // every example of this batch was skipped: go on with the next one
    }

    const Tensor& first = taken[good[0]].tensor;
    const std::string& first_path = data_.examples[static_cast<size_t>(indices[good[0]])].path;
    for (size_t i : good) {
      const Tensor& t = taken[i].tensor;
      const std::string& path = data_.examples[static_cast<size_t>(indices[i])].path;
      TL_CHECK(t.defined() && t.dtype() == DType::F32 && !t.is_cuda() && t.dim() == 3, "BatchLoader: the transform of ",
               path, " returned ", t.defined() ? t.describe() : "an undefined tensor", "; expected a CPU F32 [C,H,W]");
      TL_CHECK(t.shape() == first.shape(), "BatchLoader: ", path, " transformed to ", shape_str(t.shape()), " but ",
               first_path, " to ", shape_str(first.shape()), "; every example must have the same shape");
    }
    const int64_t n = static_cast<int64_t>(good.size());
    batch.images = Tensor::empty({n, first.size(0), first.size(1), first.size(2)}, DType::F32);
    batch.labels = Tensor::empty({n}, DType::I64);
    batch.indices.clear();
    float* images = batch.images.data<float>();
    int64_t* labels = batch.labels.data<int64_t>();
    for (int64_t row = 0; row < n; ++row) {
      const size_t i = good[static_cast<size_t>(row)];
      std::memcpy(images + row * first.numel(), taken[i].tensor.data<float>(), first.nbytes());
      labels[row] = data_.examples[static_cast<size_t>(indices[i])].label;
      batch.indices.push_back(indices[i]);
    }
    return true;
  }
  return false;
}

const std::vector<std::string>& BatchLoader::bad_files() const { return bad_files_; }

int64_t BatchLoader::decoded_count() const { return decoded_.load(std::memory_order_relaxed); }

}  // namespace tl
