#pragma once
// Runs the built `tl` program (end-to-end tests) and captures what it printed.
#include <string>

namespace tl::test {

struct ToolResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// `arguments` is appended to the tool's path as-is (quote paths yourself).
ToolResult run_tool(const std::string& arguments);

}  // namespace tl::test
