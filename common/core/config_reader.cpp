#include "frugal/core/config_reader.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace frugal {

namespace {

// Checks text before toml++ 3.3.0 (Debian's) sees it. Its generated
// is_non_ascii_horizontal_whitespace() reaches __builtin_unreachable() for most
// code points in U+00A1..U+0499, U+2F4E..U+3347 and U+FB06..U+FEFE: undefined
// behaviour. The parser asks that question of every character outside strings
// and comments (a bare value is scanned up to a terminator, quotes included), and
// inside a """ string of the character after a backslash and of the first one
// after a line-ending backslash's whitespace (found by parsing every code point
// in each context against a copy of the header that counts the unreachable
// branch, and by fuzzing; config_reader_test.cpp tries them all). Those places
// are refused; TOML allows only ASCII outside strings and comments anyway.
// Strings and comments are parsed safely and keep any UTF-8. To know where a
// quote opens a string as toml++ will, the guard follows TOML's structure:
// keys, values, arrays, inline tables and table headers.
class TomlTextGuard {
 public:
  TomlTextGuard(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  Status Check() {
    // toml++ skips a UTF-8 byte order mark at the very start.
    if (text_.starts_with("\xEF\xBB\xBF")) i_ = 3;
    while (i_ < text_.size()) {
      switch (state_) {
        case State::kOutside: FRUGAL_RETURN_IF_ERROR(Outside()); break;
        case State::kComment: Comment(); break;
        case State::kBasic: FRUGAL_RETURN_IF_ERROR(Basic(false)); break;
        case State::kMultiBasic: FRUGAL_RETURN_IF_ERROR(Basic(true)); break;
        case State::kLiteral: Literal(false); break;
        case State::kMultiLiteral: Literal(true); break;
      }
    }
    return OkStatus();
  }

 private:
  enum class State { kOutside, kComment, kBasic, kMultiBasic, kLiteral, kMultiLiteral };
  // What toml++ expects outside strings. A quote opens a string only at the
  // start of a key segment or a value; anywhere else toml++ either refuses it
  // or scans it as part of a bare value, so the text after it stays "outside".
  enum class Expect {
    kKeyStart,  // a key segment: line start, after '.', '[', '{' or ',' in an inline table
    kKey,       // inside a key (bare segment or after a quoted one)
    kValue,     // a value: after '=', '[' or ',' in an array
    kBare,      // inside a bare value (number, boolean, date), up to a terminator
    kAfter,     // after a value or header, or text toml++ refuses
  };

  unsigned char At(size_t i) const { return i < text_.size() ? static_cast<unsigned char>(text_[i]) : 0; }
  bool NonAscii() const { return At(i_) >= 0x80; }

  // Columns count code points, as toml++'s do.
  void Advance(size_t n = 1) {
    for (; n > 0 && i_ < text_.size(); --n, ++i_) {
      const unsigned char b = At(i_);
      if (b == '\n') {
        ++line_;
        column_ = 1;
      } else if ((b & 0xC0) != 0x80) {
        ++column_;
      }
    }
  }

  size_t RunOf(char c) const {
    size_t n = 0;
    while (i_ + n < text_.size() && text_[i_ + n] == c) ++n;
    return n;
  }

  static bool IsBareKeyChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  }

  Status Outside() {
    if (NonAscii()) return Refuse("outside a string or comment (TOML allows only ASCII there)");
    const char c = text_[i_];
    if (c == '"' || c == '\'') {
      if (expect_ == Expect::kKeyStart || expect_ == Expect::kValue) {
        string_in_key_ = expect_ == Expect::kKeyStart;
        const bool multi = RunOf(c) >= 3;
        state_ = c == '"' ? (multi ? State::kMultiBasic : State::kBasic)
                          : (multi ? State::kMultiLiteral : State::kLiteral);
        Advance(multi ? 3 : 1);
        return OkStatus();
      }
      if (expect_ != Expect::kBare) expect_ = Expect::kAfter;
    } else if (c == '#') {
      if (expect_ == Expect::kBare) expect_ = Expect::kAfter;
      state_ = State::kComment;
    } else {
      Structure(c);
    }
    Advance();
    return OkStatus();
  }

  void Structure(char c) {
    const bool space = c == ' ' || c == '\t';
    const bool newline = c == '\n' || c == '\r';
    const bool ends_value = space || newline || c == ',' || c == ']' || c == '}';
    if (expect_ == Expect::kBare) {
      if (!ends_value) return;
      expect_ = Expect::kAfter;
    }
    const char open = nesting_.empty() ? '\0' : nesting_.back();
    if (newline) {
      // Only arrays span lines; at the top level a line starts a key.
      if (open == '\0') expect_ = Expect::kKeyStart;
      return;
    }
    if (space) return;
    if (c == ',') {
      expect_ = open == '[' ? Expect::kValue : open == '{' ? Expect::kKeyStart : Expect::kAfter;
      return;
    }
    if (c == ']' || c == '}') {
      if ((c == ']' && (open == '[' || open == 'h')) || (c == '}' && open == '{')) nesting_.pop_back();
      expect_ = Expect::kAfter;
      return;
    }
    switch (expect_) {
      case Expect::kKeyStart:
        if (c == '[') {
          if (open != 'h') nesting_.push_back('h');  // a table header; "[[" is one
        } else {
          expect_ = IsBareKeyChar(c) ? Expect::kKey : Expect::kAfter;
        }
        return;
      case Expect::kKey:
        if (c == '.') {
          expect_ = Expect::kKeyStart;
        } else if (c == '=') {
          expect_ = Expect::kValue;
        } else if (!IsBareKeyChar(c)) {
          expect_ = Expect::kAfter;
        }
        return;
      case Expect::kValue:
        if (c == '[') {
          nesting_.push_back('[');
        } else if (c == '{') {
          nesting_.push_back('{');
          expect_ = Expect::kKeyStart;
        } else {
          expect_ = Expect::kBare;
        }
        return;
      case Expect::kBare:
      case Expect::kAfter:
        return;
    }
  }

  void EndString() {
    state_ = State::kOutside;
    expect_ = string_in_key_ ? Expect::kKey : Expect::kAfter;
  }

  // A line break ends a comment; the outside state then reads it.
  void Comment() {
    if (text_[i_] == '\n' || text_[i_] == '\r') {
      state_ = State::kOutside;
      return;
    }
    Advance();
  }

  Status Basic(bool multi) {
    const char c = text_[i_];
    if (c == '\\') {
      Advance();
      if (NonAscii()) return Refuse("after a backslash (not an escape)");
      if (multi && IsAsciiSpace(At(i_))) {
        // A line-ending backslash: toml++ asks whether the first character after
        // the whitespace and line breaks it trims is whitespace.
        while (IsAsciiSpace(At(i_))) Advance();
        if (NonAscii()) {
          return Refuse("first after a line-ending backslash (toml++ 3.3.0 mishandles it there; "
                        "write it as a \\u escape)");
        }
        return OkStatus();
      }
      Advance();  // the escaped character
      return OkStatus();
    }
    if (c == '"') {
      CloseQuote('"', multi);
      return OkStatus();
    }
    // A single-line string cannot span lines; toml++ refuses it there.
    if (!multi && (c == '\n' || c == '\r')) {
      EndString();
    } else {
      Advance();
    }
    return OkStatus();
  }

  void Literal(bool multi) {
    const char c = text_[i_];
    if (c == '\'') {
      CloseQuote('\'', multi);
    } else if (!multi && (c == '\n' || c == '\r')) {
      EndString();
    } else {
      Advance();
    }
  }

  // In a multi-line string, a run of three to five quotes closes it (up to two of
  // them are content) and a shorter run is content, as in toml++.
  void CloseQuote(char quote, bool multi) {
    const size_t run = multi ? RunOf(quote) : 1;
    Advance(std::min<size_t>(run, 5));
    if (!multi || run >= 3) EndString();
  }

  static bool IsAsciiSpace(unsigned char b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r'; }

  Error Refuse(std::string_view where) const {
    std::ostringstream os;
    os << source_ << ":" << line_ << ":" << column_ << ": malformed TOML: character " << CodePoint()
       << " " << where;
    return InvalidArgumentError(os.str());
  }

  // "U+03D3", or the byte ("byte 0xCF") when it does not start valid UTF-8.
  std::string CodePoint() const {
    const unsigned char b = At(i_);
    const size_t len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    char32_t cp = b & (0x7F >> len);
    bool valid = len > 0 && i_ + len <= text_.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const unsigned char cont = At(i_ + k);
      valid = (cont & 0xC0) == 0x80;
      cp = (cp << 6) | (cont & 0x3F);
    }
    char buf[16];
    if (!valid) {
      std::snprintf(buf, sizeof buf, "byte 0x%02X", static_cast<unsigned>(b));
    } else {
      std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
    }
    return buf;
  }

  std::string_view text_;
  std::string_view source_;
  State state_ = State::kOutside;
  Expect expect_ = Expect::kKeyStart;
  bool string_in_key_ = false;
  std::vector<char> nesting_;  // '[' array, '{' inline table, 'h' table header
  size_t i_ = 0;
  size_t line_ = 1;
  size_t column_ = 1;
};

}  // namespace

Result<toml::table> ParseToml(std::string_view text, std::string_view source) {
  FRUGAL_RETURN_IF_ERROR(TomlTextGuard(text, source).Check());
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << source << ":" << e.source().begin.line << ":" << e.source().begin.column
       << ": malformed TOML: " << e.description();
    return InvalidArgumentError(os.str());
  }
}

Status ApplyOverride(toml::table& t, const std::string& kv) {
  const size_t eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidArgumentError("override '" + kv + "' is not of the form key=value");
  }
  const std::string key = kv.substr(0, eq);
  const std::string value = kv.substr(eq + 1);
  // A value that is not a TOML literal (or that the guard refuses) is a string.
  auto literal = ParseToml("v = " + value, "override");
  toml::table parsed;
  if (literal.ok()) {
    parsed = std::move(*literal);
  } else {
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
  FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseToml(text, source));
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
