#include "apps/device.h"

#include "engine/error.h"
#include "engine/host_upload.h"

namespace tl::app {

Device device_from_option(const std::string& text) {
  TL_CHECK(text == "auto" || text == "cpu" || text == "cuda", "--device must be auto, cpu or cuda, got '", text, "'");
  if (text == "cpu") return Device::CPU;
  if (text == "auto") return Context::cuda_available() ? Device::CUDA : Device::CPU;
  TL_CHECK(Context::cuda_available(),
           "--device cuda, but no CUDA device is usable here (no driver or no GPU); use --device cpu or auto");
  return Device::CUDA;
}

ContextOptions job_context_options(Device device, uint64_t seed, int threads) {
  ContextOptions o;
  o.device = device;
  o.seed = seed;
  o.threads = threads;
  return o;
}

Tensor to_job_device(Context& ctx, const Tensor& host) {
  if (ctx.device() == Device::CPU || host.device() == ctx.device()) return host;
  return upload_async(ctx, host);
}

void move_model(Context& ctx, Model& model) { model.to(ctx, ctx.device()); }

std::string device_summary(Context& ctx) {
  if (ctx.device() == Device::CUDA) return "cuda";
  return str("cpu, ", ctx.threads(), " threads");
}

}  // namespace tl::app
