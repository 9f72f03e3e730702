// A plain main() for the fuzz targets, built with the normal compiler: runs LLVMFuzzerTestOneInput
// once over every file in the folders (or files) named on the command line, in sorted order, so CI
// replays the seed corpus and every input that once crashed without needing clang or libFuzzer.
// A crash, sanitizer abort or uncaught exception fails the run as it would under libFuzzer.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    fs::path arg = argv[i];
    if (fs::is_directory(arg)) {
      for (const auto& entry : fs::recursive_directory_iterator(arg))
        if (entry.is_regular_file()) inputs.push_back(entry.path());
    } else if (fs::is_regular_file(arg)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "%s: not a file or folder\n", arg.c_str());
      return 2;
    }
  }
  // An empty corpus would make the regression test pass without testing anything.
  if (inputs.empty()) {
    std::fprintf(stderr, "no inputs found in the given folders\n");
    return 2;
  }
  std::sort(inputs.begin(), inputs.end());
  for (const fs::path& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.eof() && in.fail()) {
      std::fprintf(stderr, "%s: cannot read\n", path.c_str());
      return 2;
    }
    // Named before running, so the log shows which input a crash came from.
    std::fprintf(stderr, "running %s (%zu bytes)\n", path.c_str(), bytes.size());
    // A heap copy of exactly `size` bytes (never a null pointer, even when empty), as libFuzzer passes
    // it, so an overread past the end hits the allocation's edge rather than the vector's spare room.
    std::unique_ptr<uint8_t[]> exact(new uint8_t[bytes.size()]);
    if (!bytes.empty()) std::memcpy(exact.get(), bytes.data(), bytes.size());
    LLVMFuzzerTestOneInput(exact.get(), bytes.size());
  }
  std::printf("ran %zu inputs\n", inputs.size());
  return 0;
}
