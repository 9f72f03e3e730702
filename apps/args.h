#pragma once
// A small command-line parser for the tl subcommands: --name value options, --flag switches,
// positionals, and --help generated from the declarations.
#include <map>
#include <string>
#include <vector>

namespace tl::app {

class Args {
 public:
  Args(std::string command, std::string summary) : command_(std::move(command)), summary_(std::move(summary)) {}

  Args& option(const std::string& name, const std::string& default_value, const std::string& help);
  Args& flag(const std::string& name, const std::string& help);
  Args& positional(const std::string& name, const std::string& help, bool repeated = false);

  // Returns false when --help was asked (help already printed). Throws tl::Error on bad usage.
  bool parse(int argc, char** argv);
  std::string help() const;

  const std::string& get(const std::string& name) const;
  int get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  bool has(const std::string& flag_name) const;
  const std::vector<std::string>& rest() const { return rest_; }

 private:
  struct Spec {
    std::string name, default_value, help;
    bool is_flag = false;
  };
  std::string command_, summary_;
  std::vector<Spec> specs_;
  std::vector<std::pair<std::string, std::string>> positional_specs_;
  bool repeated_positional_ = false;
  std::map<std::string, std::string> values_;
  std::vector<std::string> rest_;  // positionals in order
};

}  // namespace tl::app
