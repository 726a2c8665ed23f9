// TOML configuration reading shared by frugal-sim, frugal-coordinator and frugal-client:
// typed reads at dotted paths, `key=value` command-line overrides, unknown keys
// refused (a typo never silently runs a default), and the effective value of
// every key recorded for reports.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "frugal/core/status.h"

namespace frugal {

// Parses TOML text; every TOML parse goes through here. Refuses, naming source,
// line and column, a non-ASCII character where toml++ 3.3.0 has undefined
// behaviour (outside strings and comments, and two places in """ strings);
// UTF-8 inside strings and comments is kept. Thread-safe.
Result<toml::table> ParseToml(std::string_view text, std::string_view source);
// Parses TOML text and applies "a.b=value" overrides (a value that is not a
// TOML literal is taken as a string). Errors name the source, line and key.
Result<toml::table> ParseTomlWithOverrides(std::string_view text, std::string_view source,
                                           const std::vector<std::string>& overrides);
// Applies one "a.b=value" override to `t`.
Status ApplyOverride(toml::table& t, const std::string& key_value);
// `t` as TOML text (tables as [sections]); parses back to an equal table.
std::string TomlText(const toml::table& t);
// Reads a file's text; kNotFound naming the path if it cannot be opened.
Result<std::string> ReadTextFile(const std::string& path);

// Typed reads from a parsed table. The first failure is kept in error().
class ConfigReader {
 public:
  explicit ConfigReader(const toml::table& t) : t_(t) {}

  // Leaves `out` unchanged if the key is absent; records its effective value.
  void Get(const std::string& path, bool& out);
  void Get(const std::string& path, int& out);
  void Get(const std::string& path, uint32_t& out);
  void Get(const std::string& path, uint64_t& out);
  void Get(const std::string& path, float& out);
  void Get(const std::string& path, double& out);
  void Get(const std::string& path, std::string& out);
  void Get(const std::string& path, std::vector<std::string>& out);
  // A table of id = non-negative share, e.g. { wifi = 0.5, lte = 0.5 }, in key order.
  void Get(const std::string& path, std::vector<std::pair<std::string, double>>& out);

  // Records an error for every key the file set that no Get() read.
  void CheckUnknown();

  const std::optional<Error>& error() const { return error_; }
  // Every key read, with its effective value.
  const std::map<std::string, std::string>& flat() const { return flat_; }
  // The same keys as a typed TOML table (nested by the dots), for writing the
  // complete configuration a run ran with (run.toml) so it can be run again.
  const toml::table& effective() const { return effective_; }

 private:
  const toml::node* Find(const std::string& path);
  void Fail(const std::string& path, const char* want);
  void Walk(const toml::table& t, const std::string& prefix);
  template <typename V>
  void Put(const std::string& path, V&& value);

  const toml::table& t_;
  std::set<std::string> used_;
  std::map<std::string, std::string> flat_;
  toml::table effective_;
  std::optional<Error> error_;
};

}  // namespace frugal
