#include "support/gradcheck.h"

#include <algorithm>
#include <cmath>

#include "support/test_util.h"

namespace tl::test {

double gradient_error(double analytic, double numeric, double floor) {
  double scale = std::max({std::fabs(analytic), std::fabs(numeric), floor});
  return std::fabs(analytic - numeric) / scale;
}

namespace {

double projected_sum(const Tensor& y, const Tensor& r) {
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += y.item(i) * r.item(i);
  return s;
}

void merge(GradCheckReport& into, const GradCheckReport& part) {
  if (part.max_rel_error >= into.max_rel_error) {
    into.max_rel_error = part.max_rel_error;
    into.worst = part.worst;
  }
  into.checked += part.checked;
}

}  // namespace

GradCheckReport check_function_gradient(const std::function<double(const Tensor&)>& f, const Tensor& x,
                                        const Tensor& analytic, const std::string& label,
                                        GradCheckOptions options) {
  TL_CHECK(x.dtype() == DType::F64, "gradient checks run in double, got ", x.describe());
  GradCheckReport report;
  Tensor probe = x.clone();
  double* p = probe.data<double>();
  int64_t n = x.numel();
  int64_t stride = std::max<int64_t>(1, n / options.max_checks_per_tensor);
  for (int64_t i = 0; i < n; i += stride) {
    double saved = p[i];
    p[i] = saved + options.eps;
    double plus = f(probe);
    p[i] = saved - options.eps;
    double minus = f(probe);
    p[i] = saved;
    double numeric = (plus - minus) / (2 * options.eps);
    double err = gradient_error(analytic.item(i), numeric);
    ++report.checked;
    if (err >= report.max_rel_error) {
      report.max_rel_error = err;
      report.worst = str(label, "[", i, "] analytic ", analytic.item(i), " numeric ", numeric);
    }
  }
  return report;
}

GradCheckReport check_layer_gradients(Context& ctx, Layer& layer, const Tensor& x, GradCheckOptions options) {
  Rng projection_rng(options.seed + 1000);
  auto run = [&](const Tensor& input) {
    ctx.rng().reseed(options.seed);
    return layer.forward(ctx, input, options.mode);
  };

  Tensor y = run(x);
  Tensor r = random_tensor(projection_rng, y.shape(), DType::F64);

  // Poison parameter gradients so the check also proves accumulation.
  std::vector<Parameter*> params;
  std::vector<Tensor> poison;
  std::function<void(Layer&)> collect = [&](Layer& l) {
    for (Parameter* p : l.local_parameters())
      if (p->trainable()) params.push_back(p);
    for (auto& [name, child] : l.children()) collect(*child);
  };
  collect(layer);
  for (Parameter* p : params) {
    poison.push_back(random_tensor(projection_rng, p->value.shape(), DType::F64));
    p->grad(ctx).copy_from(ctx, poison.back());
  }
  Tensor dx = layer.backward(ctx, r, options.check_input);

  auto loss_at = [&](const Tensor& input) { return projected_sum(run(input), r); };
  GradCheckReport report;
  if (options.check_input) merge(report, check_function_gradient(loss_at, x, dx, "input", options));

  for (size_t k = 0; k < params.size(); ++k) {
    Parameter* p = params[k];
    Tensor analytic = p->grad(ctx).clone();
    double* a = analytic.data<double>();
    for (int64_t i = 0; i < analytic.numel(); ++i) a[i] -= poison[k].item(i);
    Tensor original = p->value.clone();
    auto loss_at_param = [&](const Tensor& value) {
      p->value.copy_from(ctx, value);
      double l = projected_sum(run(x), r);
      p->value.copy_from(ctx, original);
      return l;
    };
    merge(report, check_function_gradient(loss_at_param, original, analytic, p->local_name(), options));
  }
  return report;
}

}  // namespace tl::test
