// Generic tabular data: delimited text (plain or gzip'd) with a declared label
// column and feature columns, normalised with statistics of the training rows
// only, and a dataset manifest (TOML) that names the file(s), the columns, the
// normalisation and a seeded train/test split. A front end whose data_dir
// names a manifest trains on it exactly as on Fashion-MNIST (LoadDataSplit).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"

namespace frugal {

// Hard limits of the table reader, checked while reading.
inline constexpr uint64_t kTableMaxBytes = uint64_t{1} << 30;  // 1 GiB of text after decompression
inline constexpr size_t kTableMaxColumns = size_t{1} << 16;
inline constexpr size_t kTableMaxRows = size_t{1} << 26;

enum class Normalisation : uint8_t {
  kNone,    // values as read
  kScale,   // divided by `scale` (e.g. 16 for 4-bit pixels, 255 for bytes)
  kMinMax,  // (x - min) / (max - min) per feature, over the training rows; a constant feature gives 0
  kZScore,  // (x - mean) / standard deviation per feature, over the training rows; a constant feature gives 0
};
// "none", "scale", "minmax", "zscore"; kInvalidArgument naming the choices otherwise.
Result<Normalisation> ParseNormalisation(std::string_view name);

struct TableSchema {
  // 0-based; a negative value counts from the end (-1: the last column).
  int64_t label_column = 0;
  // Feature columns: "all" (every column but the label) or a list of 0-based
  // columns and inclusive ranges, "0-63" or "1,3,5-9", in the order given.
  std::string feature_columns = "all";
  size_t header_lines = 0;  // lines skipped before the data
  char delimiter = ',';
  size_t num_classes = 0;  // 0: the largest label + 1; else labels must be below it
};

// Parses table text (already decompressed). Labels must be integers >= 0,
// features finite numbers; every row has the first row's column count; blank
// lines are skipped, CRLF accepted. Errors name `source`, the 1-based line and
// column: a bad column spec, a column out of range, the label among the
// features, a value that is not a number, a ragged row, a limit exceeded.
Result<Dataset> ParseTable(std::string_view text, const TableSchema& schema, const std::string& source);

// Reads `path` (gzip'd or plain, at most kTableMaxBytes) and parses it.
// kNotFound if it cannot be opened, kDataLoss for corrupt gzip.
Result<Dataset> LoadTable(const std::string& path, const TableSchema& schema);

// Per-feature affine map x -> (x - offset) * factor.
struct FeatureNormaliser {
  std::vector<float> offset, factor;
  // Fits `how` on `data` (a float data set); `scale` is kScale's divisor (> 0).
  static Result<FeatureNormaliser> Fit(const Dataset& data, Normalisation how, double scale);
  // Applies the map in place; data.num_features must equal offset.size().
  void Apply(Dataset& data) const;
};

// A dataset manifest, TOML:
//   name = "sklearn-digits"
//   file = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
//   # or train_file = ... and test_file = ... (then no split)
//   label_column = -1            feature_columns = "0-63"
//   header_lines = 0             delimiter = ","
//   num_classes = 10             normalise = "scale"   scale = 16
//   test_fraction = 0.2          split_seed = 1
// Relative file paths are taken from the manifest's own directory.
struct DatasetManifest {
  std::string name;
  std::string file, train_file, test_file;
  TableSchema schema;
  Normalisation normalise = Normalisation::kNone;
  double scale = 1;
  double test_fraction = 0.2;  // of `file`, in (0, 1)
  uint64_t split_seed = 1;
};

// Parses a manifest; `base_dir` resolves relative file paths. Errors name the key.
Result<DatasetManifest> ParseDatasetManifest(std::string_view toml_text, const std::string& source,
                                             const std::string& base_dir);

// True when `data_dir` is a manifest: a .toml file, or a directory holding dataset.toml.
bool IsDatasetManifest(const std::string& data_dir);

// One split of a manifest's data: `file` is split by a seeded shuffle
// (test_fraction of the rows, at least one each side, the same rows for every
// caller with the same seed); the normalisation is fitted on the training rows
// and applied to both, so the simulator, the coordinator and every agent see
// identical features.
Result<Dataset> LoadManifestSplit(const DatasetManifest& manifest, Split split);

// Reads the manifest at `data_dir` (see IsDatasetManifest) and loads a split.
Result<Dataset> LoadDataSplit(Split split, const std::string& data_dir);

}  // namespace frugal
