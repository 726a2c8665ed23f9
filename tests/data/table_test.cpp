#include "frugal/data/table.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>

#include "data/temp_dir.h"
#include "frugal/test_source_dir.h"

namespace frugal {
namespace {

constexpr const char* kDigitsCsv = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

std::string ManifestPath(const std::string& name) {
  return std::string(FRUGAL_SOURCE_DIR) + "/sim/scenarios/data/" + name + ".toml";
}

TEST_SUITE("data") {
  TEST_CASE("a table's label column and feature columns are taken as declared") {
    TableSchema s;
    s.label_column = -1;
    s.feature_columns = "2,0";
    s.header_lines = 1;
    auto d = ParseTable("a,b,c,label\n1,2,3,0\r\n\n4,5,6,2\n", s, "t.csv");
    REQUIRE_MESSAGE(d.ok(), d.status().ToString());
    CHECK(d->num_features == 2);
    CHECK(d->num_classes == 3);
    CHECK(d->labels == std::vector<int32_t>{0, 2});
    CHECK(d->features == std::vector<float>{3, 1, 6, 4});
    s.feature_columns = "all";
    s.label_column = 1;
    s.header_lines = 0;
    auto all = ParseTable("1,0,3\n4,1,6\n", s, "t.csv");
    REQUIRE(all.ok());
    CHECK(all->features == std::vector<float>{1, 3, 4, 6});
  }

  TEST_CASE("a bad table or schema is refused, naming the line, the column and what was wrong") {
    TableSchema s;
    s.label_column = -1;
    auto msg = [&](const std::string& text) {
      auto d = ParseTable(text, s, "t.csv");
      REQUIRE_FALSE(d.ok());
      return d.error().message();
    };
    CHECK(msg("1,2,0\n1,2\n").find("t.csv:2: expected 3 columns, got 2") != std::string::npos);
    CHECK(msg("1,x,0\n").find("t.csv:1: column 1: 'x' is not a finite number") != std::string::npos);
    CHECK(msg("1,inf,0\n").find("not a finite number") != std::string::npos);
    CHECK(msg("1,2,-1\n").find("label -1 out of range") != std::string::npos);
    CHECK(msg("1,2,1.5\n").find("is not an integer") != std::string::npos);
    CHECK(msg("\n\n").find("no data rows") != std::string::npos);
    s.feature_columns = "0-2";
    CHECK(msg("1,2,0\n").find("is the label column") != std::string::npos);
    s.feature_columns = "0-5";
    s.label_column = 0;
    CHECK(msg("0,1,2\n").find("beyond the 3 columns") != std::string::npos);
    s.feature_columns = "2-1";
    CHECK(msg("0,1,2\n").find("runs backwards") != std::string::npos);
    s.feature_columns = "one";
    CHECK(msg("0,1,2\n").find("feature_columns") != std::string::npos);
    s.feature_columns = "all";
    s.label_column = 7;
    CHECK(msg("0,1,2\n").find("label_column 7") != std::string::npos);
    s.label_column = 0;
    s.num_classes = 2;
    CHECK(msg("2,1,2\n").find("out of range [0, 2)") != std::string::npos);
  }

  TEST_CASE("min-max and z-score use the training rows' statistics, checked against a plain loop") {
    Dataset train;
    train.num_features = 3;
    train.num_classes = 2;
    train.features = {1, 10, 5, 3, 20, 5, 5, 60, 5, 7, 10, 5};  // column 2 is constant
    train.labels = {0, 1, 0, 1};
    for (Normalisation how : {Normalisation::kMinMax, Normalisation::kZScore}) {
      auto norm = FeatureNormaliser::Fit(train, how, 1);
      REQUIRE(norm.ok());
      Dataset test = train;
      test.features = {4, 30, 9};
      test.labels = {0};
      norm->Apply(test);
      for (size_t j = 0; j < 2; ++j) {
        double lo = 1e9, hi = -1e9, sum = 0, sq = 0;
        for (size_t i = 0; i < 4; ++i) {
          const double x = train.features[i * 3 + j];
          lo = std::min(lo, x);
          hi = std::max(hi, x);
          sum += x;
        }
        for (size_t i = 0; i < 4; ++i) sq += (train.features[i * 3 + j] - sum / 4) * (train.features[i * 3 + j] - sum / 4);
        const double x = j == 0 ? 4 : 30;
        const double expected = how == Normalisation::kMinMax ? (x - lo) / (hi - lo) : (x - sum / 4) / std::sqrt(sq / 4);
        CHECK(test.features[j] == doctest::Approx(expected).epsilon(1e-6));
      }
      CHECK(test.features[2] == 0.0f);  // a constant feature carries nothing
    }
    auto scale = FeatureNormaliser::Fit(train, Normalisation::kScale, 16);
    REQUIRE(scale.ok());
    Dataset t = train;
    scale->Apply(t);
    CHECK(t.features[1] == doctest::Approx(10.0 / 16));
    CHECK_FALSE(FeatureNormaliser::Fit(train, Normalisation::kScale, 0).ok());
    CHECK_FALSE(ParseNormalisation("l2").ok());
  }

  TEST_CASE("a manifest's split is seeded, disjoint and complete, and normalised with the training rows only") {
    testing::TempDir dir;
    std::string rows;
    for (int i = 0; i < 50; ++i) rows += std::to_string(i) + "," + std::to_string(i % 3) + "\n";
    dir.WriteText("t.csv", rows);
    const std::string manifest = dir.WriteText("m.toml",
                                               "file = \"t.csv\"\nlabel_column = 1\nnormalise = \"minmax\"\n"
                                               "test_fraction = 0.2\nsplit_seed = 9\n");
    CHECK(IsDatasetManifest(manifest));
    CHECK_FALSE(IsDatasetManifest(dir.Path("")));
    auto train = LoadDataSplit(Split::kTrain, manifest);
    auto test = LoadDataSplit(Split::kTest, manifest);
    REQUIRE_MESSAGE(train.ok(), train.status().ToString());
    REQUIRE(test.ok());
    CHECK(train->size() == 40);
    CHECK(test->size() == 10);
    CHECK(train->num_classes == 3);
    // Every feature value is its row number scaled by the training rows' min and max.
    std::set<int> seen;
    float train_lo = 1, train_hi = 0;
    for (float v : train->features) {
      train_lo = std::min(train_lo, v);
      train_hi = std::max(train_hi, v);
    }
    CHECK(train_lo == 0.0f);
    CHECK(train_hi == 1.0f);
    // Recover the raw row numbers: min and max of the training rows are exact row numbers.
    auto raw = ParseTable(rows, TableSchema{.label_column = 1}, "t.csv");
    REQUIRE(raw.ok());
    for (size_t i = 0; i < train->size(); ++i) CHECK(train->labels[i] >= 0);
    CHECK(train->size() + test->size() == raw->size());
    // Same seed, same split; another seed, another split.
    auto again = LoadDataSplit(Split::kTest, manifest);
    CHECK(again->features == test->features);
    dir.WriteText("m2.toml", "file = \"t.csv\"\nlabel_column = 1\nnormalise = \"none\"\nsplit_seed = 10\n");
    dir.WriteText("m1.toml", "file = \"t.csv\"\nlabel_column = 1\nnormalise = \"none\"\nsplit_seed = 9\n");
    auto a = LoadDataSplit(Split::kTest, dir.Path("m1.toml"));
    auto b = LoadDataSplit(Split::kTest, dir.Path("m2.toml"));
    auto a_train = LoadDataSplit(Split::kTrain, dir.Path("m1.toml"));
    REQUIRE((a.ok() && b.ok() && a_train.ok()));
    CHECK(a->features != b->features);
    for (float v : a->features) seen.insert(static_cast<int>(v));
    for (float v : a_train->features) CHECK(seen.insert(static_cast<int>(v)).second);  // disjoint
    CHECK(seen.size() == 50);                                                          // complete
  }

  TEST_CASE("a manifest with an unknown key, a missing file or two sources is refused by name") {
    auto bad = [](const std::string& text) {
      auto m = ParseDatasetManifest(text, "m.toml", "/tmp");
      REQUIRE_FALSE(m.ok());
      return m.error().message();
    };
    CHECK(bad("file = \"a\"\nlabel_colum = 1\n").find("label_colum") != std::string::npos);
    CHECK(bad("label_column = 1\n").find("either file") != std::string::npos);
    CHECK(bad("file = \"a\"\ntrain_file = \"b\"\n").find("either file") != std::string::npos);
    CHECK(bad("train_file = \"b\"\n").find("go together") != std::string::npos);
    CHECK(bad("file = \"a\"\ntest_fraction = 1.0\n").find("test_fraction") != std::string::npos);
    CHECK(bad("file = \"a\"\nnormalise = \"l2\"\n").find("normalise") != std::string::npos);
    CHECK(bad("file = \"a\"\ndelimiter = \";;\"\n").find("delimiter") != std::string::npos);
    auto m = ParseDatasetManifest("file = \"a.csv\"\n", "/x/digits.toml", "/x");
    REQUIRE(m.ok());
    CHECK(m->file == "/x/a.csv");
    CHECK(m->name == "digits");
    testing::TempDir dir;
    const std::string missing = dir.WriteText("m.toml", "file = \"absent.csv\"\n");
    auto r = LoadDataSplit(Split::kTrain, missing);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kNotFound);
    CHECK(r.error().message().find("absent.csv") != std::string::npos);
  }

  TEST_CASE("the sklearn digits shipped by Debian load through the scenario's manifest, as Fashion-MNIST would") {
    REQUIRE_MESSAGE(std::filesystem::exists(kDigitsCsv), "install python3-sklearn (scripts/setup.sh)");
    const std::string manifest = ManifestPath("sklearn-digits");
    auto train = LoadFashionMnist(Split::kTrain, manifest);
    auto test = LoadFashionMnist(Split::kTest, manifest);
    REQUIRE_MESSAGE(train.ok(), train.status().ToString());
    REQUIRE(test.ok());
    CHECK(train->size() + test->size() == 1797);
    CHECK(test->size() == 359);
    CHECK(train->num_features == 64);
    CHECK(train->num_classes == 10);
    CHECK(*std::max_element(train->features.begin(), train->features.end()) == 1.0f);
    CHECK(*std::min_element(train->features.begin(), train->features.end()) == 0.0f);
    auto labels = LoadFashionMnistLabels(Split::kTrain, manifest);
    REQUIRE(labels.ok());
    CHECK(*labels == train->labels);
    const uint32_t rows[] = {0, 5, 1000};
    auto some = LoadFashionMnistRows(Split::kTrain, rows, manifest);
    REQUIRE(some.ok());
    CHECK(some->labels == std::vector<int32_t>{train->labels[0], train->labels[5], train->labels[1000]});
    CHECK(std::equal(some->row(2), some->row(2) + 64, train->row(1000)));
    const uint32_t unordered[] = {5, 0};
    CHECK_FALSE(LoadFashionMnistRows(Split::kTrain, unordered, manifest).ok());

    auto cancer = LoadDataSplit(Split::kTrain, ManifestPath("sklearn-breast-cancer"));
    REQUIRE_MESSAGE(cancer.ok(), cancer.status().ToString());
    CHECK(cancer->num_features == 30);
    CHECK(cancer->num_classes == 2);
    CHECK(cancer->size() == 455);
  }
}

}  // namespace
}  // namespace frugal
