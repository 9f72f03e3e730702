#include "apps/args.h"

#include <cstdio>
#include <cstdlib>

#include "engine/error.h"

namespace tl::app {

Args& Args::option(const std::string& name, const std::string& default_value, const std::string& help) {
  specs_.push_back({name, default_value, help, false});
  values_[name] = default_value;
  return *this;
}

Args& Args::flag(const std::string& name, const std::string& help) {
  specs_.push_back({name, "", help, true});
  return *this;
}

Args& Args::positional(const std::string& name, const std::string& help, bool repeated) {
  positional_specs_.emplace_back(name, help);
  repeated_positional_ = repeated;
  return *this;
}

bool Args::parse(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    if (a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      size_t eq = name.find('=');
      bool inline_value = eq != std::string::npos;
      if (inline_value) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      const Spec* spec = nullptr;
      for (const Spec& s : specs_)
        if (s.name == name) spec = &s;
      TL_CHECK(spec != nullptr, command_, ": unknown option --", name, " (see tl ", command_, " --help)");
      if (spec->is_flag) {
        TL_CHECK(!inline_value, command_, ": --", name, " takes no value");
        values_[name] = "1";
      } else {
        if (!inline_value) {
          TL_CHECK(i + 1 < argc, command_, ": --", name, " needs a value");
          value = argv[++i];
        }
        values_[name] = value;
      }
    } else {
      rest_.push_back(a);
    }
  }
  size_t required = positional_specs_.size();
  TL_CHECK(rest_.size() >= required, command_, ": expected ", required, " positional argument(s), got ", rest_.size(),
           " (see tl ", command_, " --help)");
  TL_CHECK(repeated_positional_ || rest_.size() == required, command_, ": unexpected argument '",
           rest_.empty() ? "" : rest_.back(), "'");
  return true;
}

std::string Args::help() const {
  std::string out = "usage: tl " + command_ + " [options]";
  for (auto& [name, h] : positional_specs_) out += " " + name + (repeated_positional_ ? "..." : "");
  out += "\n\n" + summary_ + "\n";
  if (!positional_specs_.empty()) out += "\narguments:\n";
  for (auto& [name, h] : positional_specs_) out += "  " + name + "\n      " + h + "\n";
  out += "\noptions:\n";
  for (const Spec& s : specs_) {
    out += "  --" + s.name + (s.is_flag ? "" : " VALUE");
    if (!s.is_flag && !s.default_value.empty()) out += "  (default: " + s.default_value + ")";
    out += "\n      " + s.help + "\n";
  }
  out += "  --help\n      show this help\n";
  return out;
}

const std::string& Args::get(const std::string& name) const {
  auto it = values_.find(name);
  TL_CHECK(it != values_.end(), command_, ": internal: option --", name, " was never declared");
  return it->second;
}

int Args::get_int(const std::string& name) const {
  const std::string& v = get(name);
  char* end = nullptr;
  long n = std::strtol(v.c_str(), &end, 10);
  TL_CHECK(!v.empty() && end && *end == '\0', command_, ": --", name, " expects an integer, got '", v, "'");
  return static_cast<int>(n);
}

double Args::get_double(const std::string& name) const {
  const std::string& v = get(name);
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  TL_CHECK(!v.empty() && end && *end == '\0', command_, ": --", name, " expects a number, got '", v, "'");
  return d;
}

bool Args::has(const std::string& flag_name) const { return values_.count(flag_name) && values_.at(flag_name) == "1"; }

}  // namespace tl::app
