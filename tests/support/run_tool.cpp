#include "support/run_tool.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>

#include "engine/error.h"

namespace tl::test {

ToolResult run_tool(const std::string& arguments) {
  std::string command = std::string("'") + TL_TOOL_PATH + "' " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  TL_CHECK(pipe != nullptr, "cannot run ", command);
  ToolResult result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace tl::test
