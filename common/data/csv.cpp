#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cmath>
#include <fstream>
#include <string>
#include <string_view>

#include "frugal/core/text.h"
#include "frugal/data/dataset.h"

namespace frugal {
namespace {

std::string Where(const std::string& path, size_t line, size_t column) {
  return path + ":" + std::to_string(line) + ": column " + std::to_string(column);
}

}  // namespace

Result<Dataset> LoadCsv(const std::string& path, const CsvOptions& opts) {
  if (!(opts.feature_scale > 0.0f) || !std::isfinite(opts.feature_scale)) {
    return InvalidArgumentError(path + ": feature_scale must be a positive finite number");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(path + ": cannot open");
  Dataset ds;
  size_t columns = 0;  // from the first data row
  int64_t max_label = -1;
  std::string line;
  size_t line_no = 0;
  const float inv_scale = 1.0f / opts.feature_scale;
  while (std::getline(in, line)) {
    ++line_no;
    if (line_no == 1 && opts.has_header) continue;
    if (TrimSpace(line).empty()) continue;
    std::string_view rest(line);
    size_t col = 0;
    bool more = true;
    while (more) {
      const size_t cut = rest.find(opts.delimiter);
      std::string_view field = TrimSpace(rest.substr(0, cut));
      more = cut != std::string_view::npos;
      rest = more ? rest.substr(cut + 1) : std::string_view();
      ++col;
      if (columns != 0 && col > columns) {
        return InvalidArgumentError(path + ":" + std::to_string(line_no) + ": expected " + std::to_string(columns) +
                                    " columns, got more");
      }
      if (col == 1) {
        int64_t label = 0;
        auto [p, ec] = std::from_chars(field.data(), field.data() + field.size(), label);
        if (ec != std::errc() || p != field.data() + field.size() || field.empty()) {
          return InvalidArgumentError(Where(path, line_no, col) + ": label '" + std::string(field) +
                                      "' is not an integer");
        }
        if (label < 0 || (opts.num_classes != 0 && label >= static_cast<int64_t>(opts.num_classes)) ||
            label > INT32_MAX) {
          return OutOfRangeError(path + ":" + std::to_string(line_no) + ": label " + std::to_string(label) +
                                 " out of range [0, " +
                                 (opts.num_classes != 0 ? std::to_string(opts.num_classes) : std::string("2^31")) +
                                 ")");
        }
        ds.labels.push_back(static_cast<int32_t>(label));
        max_label = std::max(max_label, label);
      } else {
        float v = 0.0f;
        auto [p, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
        if (ec != std::errc() || p != field.data() + field.size() || field.empty() || !std::isfinite(v)) {
          return InvalidArgumentError(Where(path, line_no, col) + ": '" + std::string(field) +
                                      "' is not a finite number");
        }
        ds.features.push_back(v * inv_scale);
      }
    }
    if (columns == 0) {
      if (col < 2) return InvalidArgumentError(path + ":" + std::to_string(line_no) + ": a row needs a label and at least one feature");
      columns = col;
      ds.num_features = columns - 1;
    } else if (col != columns) {
      return InvalidArgumentError(path + ":" + std::to_string(line_no) + ": expected " + std::to_string(columns) +
                                  " columns, got " + std::to_string(col));
    }
  }
  if (in.bad()) return DataLossError(path + ": read error after line " + std::to_string(line_no));
  if (ds.labels.empty()) return InvalidArgumentError(path + ": no data rows");
  ds.num_classes = opts.num_classes != 0 ? opts.num_classes : static_cast<size_t>(max_label + 1);
  return ds;
}

}  // namespace frugal
