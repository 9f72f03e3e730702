#include "engine/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/error.h"

namespace tl {

double StepSchedule::factor(int64_t epoch) const {
  TL_CHECK(step_size > 0, "StepSchedule: step_size must be positive, got ", step_size);
  TL_CHECK(epoch >= 0, "StepSchedule: epoch must be >= 0, got ", epoch);
  return std::pow(gamma, double(epoch / step_size));
}

double CosineSchedule::factor(int64_t epoch) const {
  TL_CHECK(total_epochs > 0, "CosineSchedule: total_epochs must be positive, got ", total_epochs);
  TL_CHECK(epoch >= 0, "CosineSchedule: epoch must be >= 0, got ", epoch);
  double progress = double(std::min(epoch, total_epochs)) / double(total_epochs);
  return min_factor + (1.0 - min_factor) * (1.0 + std::cos(std::numbers::pi * progress)) / 2.0;
}

}  // namespace tl
