// In-memory labelled data sets and their readers: gzip'd or plain IDX files
// (Fashion-MNIST, the default) and CSV. Every reader validates its input and
// returns an Error naming what was wrong; none trusts a size it read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"

#ifndef FRUGAL_FMNIST_DIR
#define FRUGAL_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#endif

namespace frugal {

// Feature values are row-major, size() * num_features of them, in one of two
// forms: `features` holds floats (CSV), or `codes` holds one byte per value,
// the value being code / code_divisor correctly rounded to float (IDX images:
// pixel / 255, so [0,1]). Codes take a quarter of the memory, and a quarter of
// the memory traffic when a trainer gathers scattered rows; CopyRow gives the
// same floats either way. Exactly one of the two is non-empty (both for 0 rows).
struct Dataset {
  size_t num_features = 0;
  size_t num_classes = 0;
  std::vector<float> features;
  std::vector<uint8_t> codes;
  float code_divisor = 255.0f;  // > 0 and finite
  std::vector<int32_t> labels;  // values in [0, num_classes)
  size_t size() const { return labels.size(); }
  bool coded() const { return !codes.empty(); }
  // True when the feature storage holds exactly size() * num_features values.
  bool consistent() const;
  // Row i's features of a float data set (!coded()). i < size().
  const float* row(size_t i) const { return features.data() + i * num_features; }
  // Writes row i's num_features values into out, in either form. i < size().
  void CopyRow(size_t i, float* out) const;
  // Asks the cache for row i ahead of a CopyRow; changes no result.
  void PrefetchRow(size_t i) const;
};

// out[i] = codes[i] / divisor for i < n, each the correctly rounded float
// quotient (bit-identical to plain division); vectorised. divisor > 0, finite.
void DecodeCodes(const uint8_t* codes, size_t n, float divisor, float* out);

// Hard limits of the IDX reader, checked against the header before anything is allocated.
inline constexpr uint64_t kIdxMaxItems = uint64_t{1} << 27;     // 134M examples
inline constexpr uint64_t kIdxMaxFeatures = uint64_t{1} << 24;  // 16M values per example
inline constexpr uint64_t kIdxMaxValues = uint64_t{1} << 32;    // 4G values in one file

// Reads an IDX image file (unsigned bytes, >= 2 dims: items x feature dims...)
// and its IDX label file (unsigned bytes, 1 dim), gzip'd or not. Pixels are
// scaled by 1/255; num_classes = largest label + 1. Errors: missing file
// (kNotFound), bad magic / type / dims / limits / count mismatch
// (kInvalidArgument), truncated or corrupt data (kDataLoss). The result is
// coded: pixels stay bytes, with code_divisor 255.
Result<Dataset> LoadIdx(const std::string& images_gz_path, const std::string& labels_gz_path);

// The labels of an IDX label file alone (e.g. to partition a data set before
// loading the pixels of one part). Errors as LoadIdx.
Result<std::vector<int32_t>> LoadIdxLabels(const std::string& labels_gz_path);

// LoadIdx keeping only `rows` (ascending, distinct, each below the file's item
// count; row k of the result is file row rows[k]). The image file is streamed,
// so memory holds the kept rows only. num_classes comes from every label in
// the file, as LoadIdx. Errors as LoadIdx, plus kInvalidArgument naming a row
// out of range or out of order.
Result<Dataset> LoadIdxRows(const std::string& images_gz_path, const std::string& labels_gz_path,
                            std::span<const uint32_t> rows);

enum class Split { kTrain, kTest };

// Fashion-MNIST has ten classes (its label file says so; partitioning before loading needs it first).
inline constexpr size_t kFashionMnistClasses = 10;

// Fashion-MNIST from dir ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz):
// 60000 or 10000 examples, 784 features in [0,1], 10 classes.
Result<Dataset> LoadFashionMnist(Split split, const std::string& dir = FRUGAL_FMNIST_DIR);
// The labels of a Fashion-MNIST split, and the split restricted to `rows` (see LoadIdxRows).
Result<std::vector<int32_t>> LoadFashionMnistLabels(Split split, const std::string& dir = FRUGAL_FMNIST_DIR);
Result<Dataset> LoadFashionMnistRows(Split split, std::span<const uint32_t> rows,
                                     const std::string& dir = FRUGAL_FMNIST_DIR);

struct CsvOptions {
  size_t num_classes = 0;     // 0: infer as largest label + 1; else labels must be < num_classes
  float feature_scale = 1.0f;  // every feature is divided by this (255 for raw pixels); must be > 0
  bool has_header = false;     // skip the first line
  char delimiter = ',';
};

// Reads a CSV file of rows "label,feature,feature,..." (blank lines skipped,
// CRLF accepted). Every row must have the first row's column count. Errors
// name the 1-based line (and column): non-numeric or non-finite value, wrong
// column count, label out of range, empty file.
Result<Dataset> LoadCsv(const std::string& path, const CsvOptions& opts);

}  // namespace frugal
