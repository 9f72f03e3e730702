#pragma once
// Gradient checking against central finite differences, in double.
//
// The scalar checked is L = sum(y * r) for a fixed random projection r, so every output element
// contributes. Parameter gradients are poisoned with random values before backward and the
// difference is compared, which proves backward accumulates into them rather than overwriting.
#include <functional>
#include <string>

#include "engine/context.h"
#include "engine/layer.h"

namespace tl::test {

struct GradCheckOptions {
  Mode mode = Mode::Train;
  double eps = 1e-6;
  int64_t max_checks_per_tensor = 64;  // elements sampled per tensor (all of them when smaller)
  uint64_t seed = 7;  // reseeds the context before every forward, so random layers repeat
  bool check_input = true;
};

struct GradCheckReport {
  double max_rel_error = 0;
  std::string worst;  // which tensor and element
  int64_t checked = 0;
};

// Relative error with gradients below `floor` in magnitude compared absolutely: the difference
// quotient carries rounding noise of about 1e-16 * |L| / eps, so tiny gradients cannot be compared
// relatively. 1e-2 keeps that noise (~1e-10) far below the 1e-6 bound.
double gradient_error(double analytic, double numeric, double floor = 1e-2);

GradCheckReport check_layer_gradients(Context& ctx, Layer& layer, const Tensor& x, GradCheckOptions options = {});

// dL/dx of a scalar function by central differences on sampled elements; returns the report of
// comparing against `analytic`.
GradCheckReport check_function_gradient(const std::function<double(const Tensor&)>& f, const Tensor& x,
                                        const Tensor& analytic, const std::string& label,
                                        GradCheckOptions options = {});

}  // namespace tl::test
