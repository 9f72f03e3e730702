#include "support/hymenoptera_slice.h"

#include <algorithm>
#include <vector>

namespace fs = std::filesystem;

namespace tl::test {

void copy_slice(const fs::path& src, const fs::path& dst, const std::string& split, int per_class) {
  for (const char* cls : {"ants", "bees"}) {
    std::vector<fs::path> files;
    for (auto& e : fs::directory_iterator(src / split / cls))
      if (e.path().extension() == ".jpg") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    fs::create_directories(dst / split / cls);
    for (int i = 0; i < per_class; ++i) fs::copy_file(files.at(i), dst / split / cls / files[i].filename());
  }
}

}  // namespace tl::test
