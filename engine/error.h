#pragma once
// One exception type for every failure the engine reports. Messages name the thing that failed
// (file, tensor, layer, call) and the values involved; callers never see an abort.
#include <sstream>
#include <stdexcept>
#include <string>

namespace tl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenate anything streamable into one string: str("layer ", name, ": shape ", s).
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

}  // namespace tl

// Throws tl::Error with the concatenated message when cond is false.
#define TL_CHECK(cond, ...)                              \
  do {                                                   \
    if (!(cond)) throw ::tl::Error(::tl::str(__VA_ARGS__)); \
  } while (0)
