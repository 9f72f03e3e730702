#include <doctest/doctest.h>

#include <cmath>

#include "engine/context.h"
#include "engine/optimizer.h"
#include "engine/schedule.h"

using namespace tl;

TEST_CASE("step schedule multiplies by gamma every step_size epochs") {
  StepSchedule schedule{3, 0.5};
  CHECK(schedule.factor(0) == 1.0);
  CHECK(schedule.factor(2) == 1.0);
  CHECK(schedule.factor(3) == 0.5);
  CHECK(schedule.factor(5) == 0.5);
  CHECK(schedule.factor(6) == 0.25);
  CHECK(schedule.factor(10) == 0.125);
  CHECK(StepSchedule{7}.factor(7) == doctest::Approx(0.1));  // default gamma
  CHECK(StepSchedule{7}.factor(14) == doctest::Approx(0.01));
  CHECK_THROWS_WITH(StepSchedule{0}.factor(1), "StepSchedule: step_size must be positive, got 0");
  CHECK_THROWS_WITH(schedule.factor(-1), "StepSchedule: epoch must be >= 0, got -1");
}

TEST_CASE("cosine schedule falls from 1 to min_factor over total_epochs and stays there") {
  CosineSchedule schedule{10, 0.1};
  CHECK(schedule.factor(0) == 1.0);
  // 0.1 + 0.9 * (1 + cos(pi/5)) / 2 with cos(36 degrees) = (1 + sqrt 5) / 4.
  CHECK(schedule.factor(2) == doctest::Approx(0.1 + 0.9 * (1 + (1 + std::sqrt(5.0)) / 4) / 2).epsilon(1e-15));
  CHECK(schedule.factor(5) == doctest::Approx(0.55).epsilon(1e-15));  // halfway: cos = 0
  CHECK(schedule.factor(10) == doctest::Approx(0.1).epsilon(1e-15));
  CHECK(schedule.factor(13) == doctest::Approx(0.1).epsilon(1e-15));
  CosineSchedule to_zero{4};
  CHECK(to_zero.factor(1) == doctest::Approx((1 + std::sqrt(0.5)) / 2).epsilon(1e-15));
  CHECK(to_zero.factor(3) == doctest::Approx((1 - std::sqrt(0.5)) / 2).epsilon(1e-15));
  CHECK(std::fabs(to_zero.factor(4)) < 1e-16);
  CHECK_THROWS_WITH(CosineSchedule{0}.factor(0), "CosineSchedule: total_epochs must be positive, got 0");
}

TEST_CASE("a schedule drives the optimizer's learning rate through set_lr_factor") {
  auto optimizer = make_sgd({});
  Parameter w("weight", Tensor::zeros({1}, DType::F64));
  optimizer->add_group({{"fc.weight", &w}}, 0.2);
  StepSchedule schedule{2, 0.1};
  optimizer->set_lr_factor(schedule.factor(3));
  CHECK(optimizer->lr() == doctest::Approx(0.02));
  CHECK(optimizer->base_lr() == 0.2);  // the base is untouched, so later factors do not compound
  optimizer->set_lr_factor(schedule.factor(4));
  CHECK(optimizer->lr() == doctest::Approx(0.002));
}
