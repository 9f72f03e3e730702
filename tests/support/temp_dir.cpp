#include "support/temp_dir.h"

#include <unistd.h>

#include <atomic>

namespace tl::test {

TempDir::TempDir(const std::string& tag) {
  static std::atomic<int> counter{0};
  path = std::filesystem::temp_directory_path() /
         ("tl_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
}

TempDir::~TempDir() {
  std::error_code ignored;  // destructors must not throw
  std::filesystem::remove_all(path, ignored);
}

}  // namespace tl::test
