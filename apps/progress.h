#pragma once
// A one-line progress bar on stderr for long loops (only when stderr is a terminal, so logs stay clean):
//   epoch 2/3 [##########----------] 470/938  1843 img/s  ETA 14s
#include <chrono>
#include <cstdint>
#include <string>

namespace tl::app {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total_steps);
  // Clears a bar left drawn (an error ended the loop), so the error message gets a line of its own.
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  // Call after each step with the number of items (images) it processed.
  void step(int64_t items);
  // Clears the bar; returns items per second over the whole run.
  double finish();
  double seconds() const;

 private:
  std::string label_;
  int64_t total_, done_ = 0, items_ = 0;
  bool interactive_;
  bool drawn_ = false;  // something is on the line that finish() (or the destructor) must clear
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace tl::app
