// Small helpers shared by the text parsers (CSV and table files, the status
// port's HTTP request lines).
#pragma once

#include <string_view>

namespace frugal {

// s without leading and trailing blanks (space, tab, CR, LF).
inline std::string_view TrimSpace(std::string_view s) {
  const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace frugal
