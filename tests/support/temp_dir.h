#pragma once
// A fresh directory per test under the system temp folder, removed (with its contents) on destruction.
#include <filesystem>
#include <string>

namespace tl::test {

class TempDir {
 public:
  // `tag` names the test file in the directory name: <tmp>/tl_test_<tag>_<pid>_<n>.
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path / name).string(); }
  std::string str() const { return path.string(); }

  std::filesystem::path path;
};

}  // namespace tl::test
