// Reading the CSV files of a run directory (rounds.csv, clients.csv): their
// lines, numbered from 1, with LF or CRLF endings, and a line's comma-separated
// fields. Private to frugal_report; the fields hold no quoted commas.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace frugal::csv_text {

class Lines {
 public:
  explicit Lines(std::string_view text) : text_(text) {}
  // The next line without its ending; false after the last one.
  bool Next(std::string_view& line) {
    if (start_ >= text_.size()) return false;
    size_t end = text_.find('\n', start_);
    if (end == std::string_view::npos) end = text_.size();
    line = text_.substr(start_, end - start_);
    start_ = end + 1;
    ++number_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return true;
  }
  // Number of the line Next() returned last (0 before the first).
  size_t number() const { return number_; }
  // True once the line returned last was the text's last.
  bool done() const { return start_ >= text_.size(); }

 private:
  std::string_view text_;
  size_t start_ = 0;
  size_t number_ = 0;
};

inline std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  for (;;) {
    const size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      fields.push_back(line.substr(start));
      return fields;
    }
    fields.push_back(line.substr(start, comma - start));
    start = comma + 1;
  }
}

}  // namespace frugal::csv_text
