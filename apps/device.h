#pragma once
// Where a tl subcommand computes (--device auto|cpu|cuda) and how host data gets there. The Context made for the
// job records the device; the model is moved there once, and every batch (images and labels) is uploaded as it
// comes off the loader.
#include <string>

#include "engine/context.h"
#include "engine/model.h"
#include "engine/tensor.h"

namespace tl::app {

// "auto" (CUDA when a device exists, else the CPU), "cpu" or "cuda"; throws "--device ..." for anything else, and
// for "cuda" on a machine without a usable CUDA device (the subcommand prefixes its name).
Device device_from_option(const std::string& text);

// A job's Context on `device`, with the CPU thread count and seed it was asked for.
ContextOptions job_context_options(Device device, uint64_t seed, int threads);

// The host tensor itself on a CPU context; on a CUDA context an asynchronous upload through pinned memory (the
// host tensor may be reused or freed as soon as this returns).
Tensor to_job_device(Context& ctx, const Tensor& host);

// Moves the model's parameters and buffers to the context's device.
void move_model(Context& ctx, Model& model);

// For the logs: "cuda" or "cpu, 4 threads".
std::string device_summary(Context& ctx);

}  // namespace tl::app
