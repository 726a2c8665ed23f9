#include <doctest/doctest.h>

#include <string>

#include "frugal/data/dataset.h"
#include "temp_dir.h"

namespace frugal {
namespace {

using testing::TempDir;

bool Mentions(const Error& e, const std::string& what) { return e.message().find(what) != std::string::npos; }

TEST_SUITE("data") {
  TEST_CASE("A CSV file with header, CRLF line ends and a blank line reads back exactly") {
    TempDir dir;
    const std::string path = dir.WriteText("good.csv", "label,a,b,c\r\n2, 0.5,1e-1,255\r\n\r\n0,0,0,0\n1,1.25,-3,7\n");
    CsvOptions opts;
    opts.has_header = true;
    auto ds = LoadCsv(path, opts);
    REQUIRE_MESSAGE(ds.ok(), ds.status().ToString());
    CHECK(ds->size() == 3);
    CHECK(ds->num_features == 3);
    CHECK(ds->num_classes == 3);  // inferred: largest label + 1
    CHECK(ds->labels == std::vector<int32_t>{2, 0, 1});
    CHECK(ds->features == std::vector<float>{0.5f, 0.1f, 255.0f, 0, 0, 0, 1.25f, -3.0f, 7.0f});

    opts.feature_scale = 255.0f;
    opts.num_classes = 10;
    auto scaled = LoadCsv(path, opts);
    REQUIRE(scaled.ok());
    CHECK(scaled->num_classes == 10);
    CHECK(scaled->features[2] == 1.0f);
  }

  TEST_CASE("Malformed CSV rows are rejected with the line number and what was wrong") {
    TempDir dir;
    struct Case {
      const char* what;
      const char* text;
      size_t num_classes;
      const char* expect;
    };
    const Case cases[] = {
        {"non-numeric feature", "1,2,3\n0,4,abc\n", 0, ":2: column 3: 'abc' is not a finite number"},
        {"non-numeric label", "1,2,3\ncat,4,5\n", 0, ":2: column 1: label 'cat' is not an integer"},
        {"fractional label", "1.5,2,3\n", 0, ":1: column 1: label '1.5' is not an integer"},
        {"NaN feature", "1,2,3\n1,nan,3\n", 0, ":2: column 2: 'nan' is not a finite number"},
        {"empty feature", "1,2,3\n1,,3\n", 0, ":2: column 2: '' is not a finite number"},
        {"too few columns", "1,2,3\n0,1,2\n1,2\n", 0, ":3: expected 3 columns, got 2"},
        {"too many columns", "1,2,3\n0,1,2,9\n", 0, ":2: expected 3 columns, got more"},
        {"label out of range", "1,2,3\n\n10,1,1\n", 10, ":3: label 10 out of range [0, 10)"},
        {"negative label", "-1,2,3\n", 0, ":1: label -1 out of range"},
        {"label only", "4\n", 0, ":1: a row needs a label and at least one feature"},
        {"no rows", "\n\n", 0, "no data rows"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.what);
      const std::string path = dir.WriteText("bad.csv", c.text);
      CsvOptions opts;
      opts.num_classes = c.num_classes;
      auto ds = LoadCsv(path, opts);
      REQUIRE_FALSE(ds.ok());
      CHECK_MESSAGE(Mentions(ds.error(), c.expect), ds.error().message());
      CHECK_MESSAGE(Mentions(ds.error(), path), ds.error().message());
    }
  }

  TEST_CASE("LoadCsv reports a missing file and a bad scale") {
    TempDir dir;
    auto missing = LoadCsv(dir.Path("none.csv"), CsvOptions{});
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code() == ErrorCode::kNotFound);
    CsvOptions opts;
    opts.feature_scale = 0.0f;
    auto zero = LoadCsv(dir.WriteText("a.csv", "1,2\n"), opts);
    REQUIRE_FALSE(zero.ok());
    CHECK(Mentions(zero.error(), "feature_scale"));
  }
}

}  // namespace
}  // namespace frugal
