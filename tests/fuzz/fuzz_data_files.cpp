// libFuzzer target for the data-file readers (LoadIdx, LoadIdxRows,
// LoadIdxLabels, LoadCsv): the input is
// written to a temporary file and read back; any bytes give an Error or a
// data set whose sizes, labels and features are consistent.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "frugal/data/dataset.h"
#include "fuzz_common.h"

namespace {

std::string WriteTemp(const uint8_t* data, size_t size, const char* suffix) {
  std::string path = "/tmp/frugal-fuzz-" + std::to_string(::getpid()) + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size != 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

void Check(const frugal::Dataset& d) {
  frugal::fuzz::Require(d.consistent());
  for (int32_t l : d.labels) frugal::fuzz::Require(l >= 0 && static_cast<size_t>(l) < d.num_classes);
  for (float x : d.features) frugal::fuzz::Require(std::isfinite(x));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // First byte picks the reader; for IDX the rest is split into an image and a label file.
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 2;
  data += 1;
  size -= 1;
  if (mode == 0) {
    // Next byte: where the image file ends, as a fraction of what remains (/255).
    if (size < 1) return 0;
    const size_t rest = size - 1;
    const size_t cut = static_cast<size_t>(data[0]) * rest / 255;
    const std::string images = WriteTemp(data + 1, cut, "-images.idx");
    const std::string labels = WriteTemp(data + 1 + cut, rest - cut, "-labels.idx");
    auto r = frugal::LoadIdx(images, labels);
    if (r.ok()) Check(*r);
    // The streaming row reader on the same files, keeping rows 0, 2, 4, ... 10:
    // whatever the whole read gave, these rows must equal its rows.
    const std::vector<uint32_t> rows = {0, 2, 4, 6, 8, 10};
    auto some = frugal::LoadIdxRows(images, labels, rows);
    if (some.ok()) {
      Check(*some);
      frugal::fuzz::Require(r.ok() && some->size() == rows.size());
      for (size_t k = 0; k < rows.size(); ++k) {
        frugal::fuzz::Require(some->labels[k] == r->labels[rows[k]]);
        for (size_t j = 0; j < some->num_features; ++j) {
          frugal::fuzz::Require(some->codes[k * some->num_features + j] == r->codes[rows[k] * r->num_features + j]);
        }
      }
    }
    auto only_labels = frugal::LoadIdxLabels(labels);
    if (r.ok()) frugal::fuzz::Require(only_labels.ok() && *only_labels == r->labels);
    std::remove(images.c_str());
    std::remove(labels.c_str());
  } else {
    const std::string csv = WriteTemp(data, size, ".csv");
    frugal::CsvOptions opts;
    opts.has_header = size > 0 && (data[0] & 1);
    auto r = frugal::LoadCsv(csv, opts);
    if (r.ok()) Check(*r);
    std::remove(csv.c_str());
  }
  return 0;
}
