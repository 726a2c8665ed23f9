// libFuzzer target for generic tabular data (ParseTable, the normalisers) and
// dataset manifests (ParseDatasetManifest): the first byte picks the schema
// (label column, feature columns, header, normalisation) or the manifest
// parser; any bytes give an Error or a data set whose sizes, labels and
// features are consistent and finite after normalisation.
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "frugal/data/table.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode >= 0xf0) {
    auto m = frugal::ParseDatasetManifest(text, "fuzz.toml", "/nonexistent");
    if (m.ok()) frugal::fuzz::Require(!m->file.empty() || (!m->train_file.empty() && !m->test_file.empty()));
    return 0;
  }
  frugal::TableSchema s;
  constexpr int64_t kLabels[] = {0, -1, 1, 2};
  constexpr const char* kFeatures[] = {"all", "0-2", "1,3", "0,2-4"};
  s.label_column = kLabels[mode & 3];
  s.feature_columns = kFeatures[(mode >> 2) & 3];
  s.header_lines = (mode >> 4) & 1;
  s.delimiter = (mode >> 5) & 1 ? ';' : ',';
  s.num_classes = (mode >> 6) & 1 ? 4 : 0;
  auto d = frugal::ParseTable(text, s, "fuzz.csv");
  if (!d.ok()) return 0;
  frugal::fuzz::Require(d->consistent());
  frugal::fuzz::Require(d->num_features > 0 && d->size() > 0);
  for (int32_t l : d->labels) frugal::fuzz::Require(l >= 0 && static_cast<size_t>(l) < d->num_classes);
  for (frugal::Normalisation how : {frugal::Normalisation::kScale, frugal::Normalisation::kMinMax,
                                    frugal::Normalisation::kZScore}) {
    frugal::Dataset copy = *d;
    auto norm = frugal::FeatureNormaliser::Fit(copy, how, 16);
    frugal::fuzz::Require(norm.ok());
    norm->Apply(copy);
    for (float x : copy.features) frugal::fuzz::Require(std::isfinite(x));
  }
  return 0;
}
