#include "frugal/core/config_reader.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace frugal {

Status ApplyOverride(toml::table& t, const std::string& kv) {
  const size_t eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidArgumentError("override '" + kv + "' is not of the form key=value");
  }
  const std::string key = kv.substr(0, eq);
  const std::string value = kv.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parsed.insert_or_assign("v", value);
  }
  toml::table* cur = &t;
  size_t start = 0;
  for (;;) {
    const size_t dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) return InvalidArgumentError("override key '" + key + "' has an empty component");
    if (dot == std::string::npos) {
      cur->insert_or_assign(part, *parsed.get("v"));
      return OkStatus();
    }
    auto* next = cur->get(part);
    if (next == nullptr) {
      cur->insert_or_assign(part, toml::table{});
      next = cur->get(part);
    }
    if (!next->is_table()) return InvalidArgumentError("override key '" + key + "': '" + part + "' is not a table");
    cur = next->as_table();
    start = dot + 1;
  }
}

namespace {

std::string Show(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

Result<toml::table> ParseTomlWithOverrides(std::string_view text, std::string_view source,
                                           const std::vector<std::string>& overrides) {
  toml::table t;
  try {
    t = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << source << ":" << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
    return InvalidArgumentError(os.str());
  }
  for (const std::string& o : overrides) FRUGAL_RETURN_IF_ERROR(ApplyOverride(t, o));
  return t;
}

Result<std::string> ReadTextFile(const std::string& path) {
  // std::ifstream opens a directory without error and reads it as empty text,
  // which would run the program on defaults instead of refusing the path.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return InvalidArgumentError(path + " is a directory");
  std::ifstream in(path);
  if (!in) return NotFoundError("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const toml::node* ConfigReader::Find(const std::string& path) {
  used_.insert(path);
  return t_.at_path(path).node();
}

void ConfigReader::Fail(const std::string& path, const char* want) {
  if (!error_) error_ = InvalidArgumentError("configuration key '" + path + "' must be " + want);
}

void ConfigReader::Get(const std::string& path, bool& out) {
  if (const toml::node* n = Find(path)) {
    if (auto v = n->value_exact<bool>()) out = *v; else Fail(path, "a boolean");
  }
  flat_[path] = out ? "true" : "false";
  Put(path, out);
}

void ConfigReader::Get(const std::string& path, int& out) {
  if (const toml::node* n = Find(path)) {
    auto v = n->value_exact<int64_t>();
    if (v && *v >= 0 && *v <= INT32_MAX) out = static_cast<int>(*v); else Fail(path, "a non-negative integer");
  }
  flat_[path] = std::to_string(out);
  Put(path, static_cast<int64_t>(out));
}

void ConfigReader::Get(const std::string& path, uint32_t& out) {
  if (const toml::node* n = Find(path)) {
    auto v = n->value_exact<int64_t>();
    if (v && *v >= 0 && *v <= UINT32_MAX) out = static_cast<uint32_t>(*v); else Fail(path, "a non-negative integer");
  }
  flat_[path] = std::to_string(out);
  Put(path, static_cast<int64_t>(out));
}

void ConfigReader::Get(const std::string& path, uint64_t& out) {
  if (const toml::node* n = Find(path)) {
    auto v = n->value_exact<int64_t>();
    if (v && *v >= 0) out = static_cast<uint64_t>(*v); else Fail(path, "a non-negative integer");
  }
  flat_[path] = std::to_string(out);
  // TOML integers are signed 64-bit; a larger seed is kept as its bit pattern.
  Put(path, static_cast<int64_t>(out));
}

void ConfigReader::Get(const std::string& path, float& out) {
  double d = out;
  Get(path, d);
  out = static_cast<float>(d);
}

void ConfigReader::Get(const std::string& path, double& out) {
  if (const toml::node* n = Find(path)) {
    auto v = n->value<double>();
    if (v && std::isfinite(*v)) out = *v; else Fail(path, "a finite number");
  }
  flat_[path] = Show(out);
  Put(path, out);
}

void ConfigReader::Get(const std::string& path, std::string& out) {
  if (const toml::node* n = Find(path)) {
    if (auto v = n->value_exact<std::string>()) out = *v; else Fail(path, "a string");
  }
  flat_[path] = out;
  Put(path, out);
}

void ConfigReader::Get(const std::string& path, std::vector<std::string>& out) {
  if (const toml::node* n = Find(path)) {
    const toml::array* a = n->as_array();
    if (a == nullptr) {
      Fail(path, "an array of strings");
    } else {
      out.clear();
      for (const auto& e : *a) {
        if (auto s = e.value_exact<std::string>()) out.push_back(*s); else Fail(path, "an array of strings");
      }
    }
  }
  std::string s;
  for (const auto& e : out) s += (s.empty() ? "" : ",") + e;
  flat_[path] = s;
  toml::array a;
  for (const auto& e : out) a.push_back(e);
  Put(path, std::move(a));
}

void ConfigReader::Get(const std::string& path, std::vector<std::pair<std::string, double>>& out) {
  if (const toml::node* n = Find(path)) {
    const toml::table* t = n->as_table();
    if (t == nullptr) {
      Fail(path, "a table of id = share");
    } else {
      out.clear();
      for (auto&& [k, v] : *t) {
        auto w = v.value<double>();
        if (w && std::isfinite(*w) && *w >= 0) out.emplace_back(std::string(k.str()), *w); else Fail(path, "a table of non-negative shares");
      }
    }
  }
  std::string s;
  for (const auto& [id, w] : out) s += (s.empty() ? "" : ", ") + id + "=" + Show(w);
  flat_[path] = s;
  toml::table shares;
  for (const auto& [id, w] : out) shares.insert_or_assign(id, w);
  Put(path, std::move(shares));
}

void ConfigReader::Walk(const toml::table& t, const std::string& prefix) {
  for (auto&& [k, v] : t) {
    const std::string path = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (used_.contains(path)) continue;
    if (const toml::table* sub = v.as_table()) {
      Walk(*sub, path);
    } else if (!error_) {
      error_ = InvalidArgumentError("unknown configuration key '" + path + "'");
    }
  }
}

void ConfigReader::CheckUnknown() { Walk(t_, ""); }

template <typename V>
void ConfigReader::Put(const std::string& path, V&& value) {
  toml::table* at = &effective_;
  size_t start = 0;
  for (size_t dot; (dot = path.find('.', start)) != std::string::npos; start = dot + 1) {
    const std::string part = path.substr(start, dot - start);
    toml::table* sub = (*at)[part].as_table();
    if (sub == nullptr) sub = at->insert_or_assign(part, toml::table{}).first->second.as_table();
    at = sub;
  }
  at->insert_or_assign(path.substr(start), std::forward<V>(value));
}

std::string TomlText(const toml::table& t) {
  std::ostringstream out;
  out << t << "\n";
  return out.str();
}

}  // namespace frugal
