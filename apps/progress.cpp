#include "apps/progress.h"

#include <unistd.h>

#include <cstdio>

namespace tl::app {

ProgressBar::ProgressBar(std::string label, int64_t total_steps)
    : label_(std::move(label)), total_(total_steps), interactive_(isatty(fileno(stderr)) != 0) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

double ProgressBar::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::step(int64_t items) {
  ++done_;
  items_ += items;
  if (!interactive_) return;
  auto now = std::chrono::steady_clock::now();
  if (done_ < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  double elapsed = seconds();
  double rate = elapsed > 0 ? items_ / elapsed : 0;
  double eta = done_ > 0 ? elapsed * (total_ - done_) / done_ : 0;
  constexpr int kWidth = 24;
  int filled = total_ > 0 ? static_cast<int>(kWidth * done_ / total_) : kWidth;
  std::string bar(filled, '#');
  bar += std::string(kWidth - filled, '-');
  std::fprintf(stderr, "\r%s [%s] %lld/%lld  %.0f img/s  ETA %.0fs ", label_.c_str(), bar.c_str(),
               static_cast<long long>(done_), static_cast<long long>(total_), rate, eta);
  std::fflush(stderr);
  drawn_ = true;
}

ProgressBar::~ProgressBar() {
  if (drawn_) std::fprintf(stderr, "\r\033[K");
}

double ProgressBar::finish() {
  if (interactive_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
  double elapsed = seconds();
  return elapsed > 0 ? items_ / elapsed : 0;
}

}  // namespace tl::app
