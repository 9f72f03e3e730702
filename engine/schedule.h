#pragma once
// Learning-rate schedules: a multiplicative factor on each group's base lr per epoch (epochs count
// from 0). Apply one with Optimizer::set_lr_factor(schedule.factor(epoch)) at the start of an epoch.
#include <cstdint>

namespace tl {

// torch.optim.lr_scheduler.StepLR: gamma^(epoch / step_size), integer division.
struct StepSchedule {
  int64_t step_size;
  double gamma = 0.1;
  double factor(int64_t epoch) const;
};

// torch.optim.lr_scheduler.CosineAnnealingLR with eta_min = min_factor * base lr:
// min_factor + (1 - min_factor) * (1 + cos(pi * epoch / total_epochs)) / 2. Epochs past the end stay
// at min_factor (PyTorch's closed form would climb back up the cosine).
struct CosineSchedule {
  int64_t total_epochs;
  double min_factor = 0;
  double factor(int64_t epoch) const;
};

}  // namespace tl
