#include "frugal/data/table.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>

#include "frugal/core/config_reader.h"
#include "frugal/core/text.h"
#include "frugal/core/random.h"

namespace frugal {
namespace {

std::string At(const std::string& source, size_t line) { return source + ":" + std::to_string(line); }

// Splits a row into fields (trimmed); kInvalidArgument past kTableMaxColumns.
Status SplitRow(std::string_view line, char delimiter, std::vector<std::string_view>& fields, const std::string& where) {
  fields.clear();
  for (;;) {
    const size_t cut = line.find(delimiter);
    fields.push_back(TrimSpace(line.substr(0, cut)));
    if (fields.size() > kTableMaxColumns) {
      return InvalidArgumentError(where + ": more than " + std::to_string(kTableMaxColumns) + " columns");
    }
    if (cut == std::string_view::npos) return OkStatus();
    line.remove_prefix(cut + 1);
  }
}

Result<size_t> ParseIndex(std::string_view s, const std::string& what) {
  size_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v >= kTableMaxColumns) {
    return InvalidArgumentError(what + ": '" + std::string(s) + "' is not a column number below " +
                                std::to_string(kTableMaxColumns));
  }
  return v;
}

// The feature columns of a `columns`-wide table, in the order the spec gives them.
Result<std::vector<size_t>> FeatureColumns(const TableSchema& schema, size_t columns, size_t label,
                                           const std::string& where) {
  std::vector<size_t> out;
  const std::string what = where + ": feature_columns";
  if (TrimSpace(schema.feature_columns) == "all") {
    for (size_t c = 0; c < columns; ++c) {
      if (c != label) out.push_back(c);
    }
  } else {
    std::string_view spec = schema.feature_columns;
    for (;;) {
      const size_t comma = spec.find(',');
      const std::string_view item = TrimSpace(spec.substr(0, comma));
      const size_t dash = item.find('-');
      FRUGAL_ASSIGN_OR_RETURN(size_t lo, ParseIndex(TrimSpace(item.substr(0, dash)), what));
      size_t hi = lo;
      if (dash != std::string_view::npos) {
        FRUGAL_ASSIGN_OR_RETURN(hi, ParseIndex(TrimSpace(item.substr(dash + 1)), what));
        if (hi < lo) return InvalidArgumentError(what + ": range '" + std::string(item) + "' runs backwards");
      }
      if (hi >= columns) {
        return InvalidArgumentError(what + ": column " + std::to_string(hi) + " is beyond the " +
                                    std::to_string(columns) + " columns of the first row");
      }
      for (size_t c = lo; c <= hi; ++c) {
        if (c == label) return InvalidArgumentError(what + ": column " + std::to_string(c) + " is the label column");
        out.push_back(c);
      }
      if (out.size() > kTableMaxColumns) return InvalidArgumentError(what + ": too many columns");
      if (comma == std::string_view::npos) break;
      spec.remove_prefix(comma + 1);
    }
  }
  if (out.empty()) return InvalidArgumentError(what + ": no feature column");
  return out;
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

}  // namespace

Result<Normalisation> ParseNormalisation(std::string_view name) {
  if (name == "none") return Normalisation::kNone;
  if (name == "scale") return Normalisation::kScale;
  if (name == "minmax") return Normalisation::kMinMax;
  if (name == "zscore") return Normalisation::kZScore;
  return InvalidArgumentError("normalise must be none, scale, minmax or zscore, not '" + std::string(name) + "'");
}

Result<Dataset> ParseTable(std::string_view text, const TableSchema& schema, const std::string& source) {
  Dataset ds;
  std::vector<std::string_view> fields;
  std::vector<size_t> features;
  size_t columns = 0, label = 0, line_no = 0;
  int64_t max_label = -1;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line_no <= schema.header_lines || TrimSpace(line).empty()) continue;
    const std::string where = At(source, line_no);
    FRUGAL_RETURN_IF_ERROR(SplitRow(line, schema.delimiter, fields, where));
    if (columns == 0) {
      columns = fields.size();
      const int64_t l = schema.label_column < 0 ? static_cast<int64_t>(columns) + schema.label_column
                                                : schema.label_column;
      if (l < 0 || l >= static_cast<int64_t>(columns)) {
        return InvalidArgumentError(where + ": label_column " + std::to_string(schema.label_column) +
                                    " is outside the first row's " + std::to_string(columns) + " columns");
      }
      label = static_cast<size_t>(l);
      FRUGAL_ASSIGN_OR_RETURN(features, FeatureColumns(schema, columns, label, where));
      ds.num_features = features.size();
    } else if (fields.size() != columns) {
      return InvalidArgumentError(where + ": expected " + std::to_string(columns) + " columns, got " +
                                  std::to_string(fields.size()));
    }
    if (ds.labels.size() >= kTableMaxRows) {
      return InvalidArgumentError(where + ": more than " + std::to_string(kTableMaxRows) + " rows");
    }
    const std::string_view lf = fields[label];
    int64_t value = 0;
    const auto [lend, lec] = std::from_chars(lf.data(), lf.data() + lf.size(), value);
    if (lf.empty() || lec != std::errc() || lend != lf.data() + lf.size()) {
      return InvalidArgumentError(where + ": column " + std::to_string(label) + ": label '" + std::string(lf) +
                                  "' is not an integer");
    }
    if (value < 0 || value > INT32_MAX ||
        (schema.num_classes != 0 && value >= static_cast<int64_t>(schema.num_classes))) {
      return OutOfRangeError(where + ": label " + std::to_string(value) + " out of range [0, " +
                             (schema.num_classes != 0 ? std::to_string(schema.num_classes) : std::string("2^31")) +
                             ")");
    }
    ds.labels.push_back(static_cast<int32_t>(value));
    max_label = std::max(max_label, value);
    for (size_t c : features) {
      const std::string_view f = fields[c];
      float v = 0;
      const auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
      if (f.empty() || ec != std::errc() || end != f.data() + f.size() || !std::isfinite(v)) {
        return InvalidArgumentError(where + ": column " + std::to_string(c) + ": '" + std::string(f) +
                                    "' is not a finite number");
      }
      ds.features.push_back(v);
    }
  }
  if (ds.labels.empty()) return InvalidArgumentError(source + ": no data rows");
  ds.num_classes = schema.num_classes != 0 ? schema.num_classes : static_cast<size_t>(max_label + 1);
  return ds;
}

Result<Dataset> LoadTable(const std::string& path, const TableSchema& schema) {
  // gzopen reads plain files transparently.
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  if (!f) return NotFoundError(path + ": cannot open");
  std::string text;
  std::vector<char> buf(1 << 16);
  for (;;) {
    const int n = gzread(f.get(), buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int code = 0;
      const char* msg = gzerror(f.get(), &code);
      return DataLossError(path + ": corrupt gzip stream: " + (msg ? msg : "unknown error"));
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > kTableMaxBytes) {
      return InvalidArgumentError(path + ": more than " + std::to_string(kTableMaxBytes) + " bytes of text");
    }
    text.append(buf.data(), static_cast<size_t>(n));
  }
  return ParseTable(text, schema, path);
}

Result<FeatureNormaliser> FeatureNormaliser::Fit(const Dataset& data, Normalisation how, double scale) {
  if (data.coded()) return InvalidArgumentError("normalisation applies to float features, not coded pixels");
  const size_t d = data.num_features, n = data.size();
  FeatureNormaliser out;
  out.offset.assign(d, 0.0f);
  out.factor.assign(d, 1.0f);
  switch (how) {
    case Normalisation::kNone:
      break;
    case Normalisation::kScale:
      if (!(scale > 0) || !std::isfinite(scale)) return InvalidArgumentError("scale must be a positive finite number");
      out.factor.assign(d, static_cast<float>(1.0 / scale));
      break;
    case Normalisation::kMinMax:
    case Normalisation::kZScore:
      for (size_t j = 0; j < d; ++j) {
        // Doubles: a float running sum over many rows loses the low bits.
        double lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0;
        for (size_t i = 0; i < n; ++i) {
          const double x = data.features[i * d + j];
          lo = std::min(lo, x);
          hi = std::max(hi, x);
          sum += x;
        }
        const double mean = n ? sum / static_cast<double>(n) : 0;
        for (size_t i = 0; i < n; ++i) {
          const double dx = data.features[i * d + j] - mean;
          sq += dx * dx;
        }
        const double sd = n ? std::sqrt(sq / static_cast<double>(n)) : 0;
        const double spread = how == Normalisation::kMinMax ? hi - lo : sd;
        out.offset[j] = static_cast<float>(how == Normalisation::kMinMax ? lo : mean);
        // A constant feature carries nothing: map it to 0 rather than divide by 0.
        out.factor[j] = spread > 0 && std::isfinite(spread) ? static_cast<float>(1.0 / spread) : 0.0f;
      }
      break;
  }
  return out;
}

void FeatureNormaliser::Apply(Dataset& data) const {
  const size_t d = offset.size();
  for (size_t i = 0; i < data.features.size(); ++i) {
    const size_t j = i % d;
    const float v = (data.features[i] - offset[j]) * factor[j];
    data.features[i] = std::isfinite(v) ? v : 0.0f;
  }
}

Result<DatasetManifest> ParseDatasetManifest(std::string_view toml_text, const std::string& source,
                                             const std::string& base_dir) {
  FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseToml(toml_text, source));
  // label_column may count from the end (-1: the last), which ConfigReader's
  // integers do not allow: it is read here and taken out of the table.
  int64_t label_column = 0;
  if (const toml::node* lc = t.get("label_column")) {
    const std::optional<int64_t> v = lc->value_exact<int64_t>();
    if (!v || *v < -static_cast<int64_t>(kTableMaxColumns) || *v >= static_cast<int64_t>(kTableMaxColumns)) {
      return InvalidArgumentError(source + ": label_column must be an integer column number (negative: from the end)");
    }
    label_column = *v;
    t.erase("label_column");
  }
  ConfigReader r(t);
  DatasetManifest m;
  std::string normalise = "none", delimiter = ",";
  uint32_t header_lines = 0, num_classes = 0;
  r.Get("name", m.name);
  r.Get("file", m.file);
  r.Get("train_file", m.train_file);
  r.Get("test_file", m.test_file);
  r.Get("feature_columns", m.schema.feature_columns);
  r.Get("header_lines", header_lines);
  r.Get("delimiter", delimiter);
  r.Get("num_classes", num_classes);
  r.Get("normalise", normalise);
  r.Get("scale", m.scale);
  r.Get("test_fraction", m.test_fraction);
  r.Get("split_seed", m.split_seed);
  r.CheckUnknown();
  if (r.error()) return r.error()->WithContext(source);
  auto err = [&](const std::string& msg) { return InvalidArgumentError(source + ": " + msg); };
  m.schema.label_column = label_column;
  m.schema.header_lines = header_lines;
  m.schema.num_classes = num_classes;
  if (delimiter.size() != 1 || delimiter == "\n") return err("delimiter must be one character");
  m.schema.delimiter = delimiter[0];
  auto how = ParseNormalisation(normalise);
  if (!how.ok()) return err(how.error().message());
  m.normalise = *how;
  if (m.normalise == Normalisation::kScale && !(m.scale > 0 && std::isfinite(m.scale))) {
    return err("scale must be a positive number");
  }
  const bool one = !m.file.empty(), two = !m.train_file.empty() || !m.test_file.empty();
  if (one == two) return err("give either file (split by test_fraction) or train_file and test_file");
  if (two && (m.train_file.empty() || m.test_file.empty())) return err("train_file and test_file go together");
  if (one && !(m.test_fraction > 0 && m.test_fraction < 1)) return err("test_fraction must be in (0, 1)");
  for (std::string* p : {&m.file, &m.train_file, &m.test_file}) {
    if (!p->empty() && std::filesystem::path(*p).is_relative()) *p = (std::filesystem::path(base_dir) / *p).string();
  }
  if (m.name.empty()) m.name = std::filesystem::path(source).stem().string();
  return m;
}

bool IsDatasetManifest(const std::string& data_dir) {
  std::error_code ec;
  const std::filesystem::path p(data_dir);
  if (std::filesystem::is_regular_file(p, ec)) return p.extension() == ".toml";
  return std::filesystem::is_regular_file(p / "dataset.toml", ec);
}

Result<Dataset> LoadManifestSplit(const DatasetManifest& m, Split split) {
  Dataset train, test;
  if (!m.file.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(Dataset all, LoadTable(m.file, m.schema));
    if (all.size() < 2) return InvalidArgumentError(m.file + ": a train/test split needs at least two rows");
    std::vector<uint32_t> order(all.size());
    std::iota(order.begin(), order.end(), 0u);
    Rng rng(m.split_seed);
    rng.Shuffle(std::span<uint32_t>(order));
    size_t n_test = static_cast<size_t>(std::llround(m.test_fraction * static_cast<double>(all.size())));
    n_test = std::clamp<size_t>(n_test, 1, all.size() - 1);
    // Each side in file order, so a split does not depend on the shuffle's order within it.
    std::vector<uint32_t> test_rows(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_test));
    std::vector<uint32_t> train_rows(order.begin() + static_cast<std::ptrdiff_t>(n_test), order.end());
    std::sort(test_rows.begin(), test_rows.end());
    std::sort(train_rows.begin(), train_rows.end());
    auto take = [&all](const std::vector<uint32_t>& rows) {
      Dataset d;
      d.num_features = all.num_features;
      d.num_classes = all.num_classes;
      d.features.reserve(rows.size() * all.num_features);
      for (uint32_t r : rows) {
        d.labels.push_back(all.labels[r]);
        d.features.insert(d.features.end(), all.row(r), all.row(r) + all.num_features);
      }
      return d;
    };
    train = take(train_rows);
    test = take(test_rows);
  } else {
    FRUGAL_ASSIGN_OR_RETURN(train, LoadTable(m.train_file, m.schema));
    FRUGAL_ASSIGN_OR_RETURN(test, LoadTable(m.test_file, m.schema));
    if (train.num_features != test.num_features) {
      return InvalidArgumentError(m.test_file + ": " + std::to_string(test.num_features) + " features, " +
                                  m.train_file + " has " + std::to_string(train.num_features));
    }
    train.num_classes = test.num_classes = std::max(train.num_classes, test.num_classes);
  }
  FRUGAL_ASSIGN_OR_RETURN(FeatureNormaliser norm, FeatureNormaliser::Fit(train, m.normalise, m.scale));
  Dataset& out = split == Split::kTrain ? train : test;
  norm.Apply(out);
  return std::move(out);
}

Result<Dataset> LoadDataSplit(Split split, const std::string& data_dir) {
  std::filesystem::path p(data_dir);
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) p /= "dataset.toml";
  FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadTextFile(p.string()));
  FRUGAL_ASSIGN_OR_RETURN(DatasetManifest m, ParseDatasetManifest(text, p.string(), p.parent_path().string()));
  auto ds = LoadManifestSplit(m, split);
  if (!ds.ok()) return ds.error().WithContext("dataset " + m.name);
  return ds;
}

}  // namespace frugal
