#include <cstdio>

#include "apps/args.h"
#include "apps/commands.h"
#include "engine/context.h"

namespace tl::app {

int run_info(int argc, char** argv) {
  Args args("info", "Show how tl was built and what hardware it sees.");
  if (!args.parse(argc, argv)) return 0;
  Context ctx;
#ifdef TL_HAVE_OPENBLAS
  const char* blas = "OpenBLAS";
#else
  const char* blas = "built-in blocked GEMM";
#endif
  std::printf("CPU threads: %d\nCPU GEMM: %s\nCUDA devices: %d\n", ctx.threads(), blas, Context::cuda_device_count());
  return 0;
}

}  // namespace tl::app
