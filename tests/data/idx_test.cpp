#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "frugal/data/dataset.h"
#include "temp_dir.h"

namespace frugal {
namespace {

using testing::TempDir;

// Builds an IDX file: magic (type 0x08, ndims), big-endian dims, then body.
std::vector<uint8_t> Idx(std::vector<uint32_t> dims, std::vector<uint8_t> body, uint8_t type = 0x08) {
  std::vector<uint8_t> b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    b.push_back(static_cast<uint8_t>(d >> 24));
    b.push_back(static_cast<uint8_t>(d >> 16));
    b.push_back(static_cast<uint8_t>(d >> 8));
    b.push_back(static_cast<uint8_t>(d));
  }
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

std::string WriteGz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
  return path;
}

bool Mentions(const Error& e, const std::string& what) { return e.message().find(what) != std::string::npos; }

TEST_SUITE("data") {
  TEST_CASE("The real Fashion-MNIST training and test sets load with the documented shape") {
    auto train = LoadFashionMnist(Split::kTrain);
    REQUIRE_MESSAGE(train.ok(), train.status().ToString());
    auto test = LoadFashionMnist(Split::kTest);
    REQUIRE_MESSAGE(test.ok(), test.status().ToString());
    CHECK(train->size() == 60000);
    CHECK(test->size() == 10000);
    for (const Dataset* ds : {&*train, &*test}) {
      CHECK(ds->num_features == 784);
      CHECK(ds->num_classes == 10);
      CHECK(ds->coded());
      CHECK(ds->consistent());
      CHECK(ds->codes.size() == ds->size() * 784);
      CHECK(ds->code_divisor == 255.0f);
      const auto [lo, hi] = std::minmax_element(ds->codes.begin(), ds->codes.end());
      CHECK(*lo == 0);
      CHECK(*hi == 255);
      std::vector<size_t> per_class(10, 0);
      for (int32_t y : ds->labels) {
        REQUIRE(y >= 0);
        REQUIRE(y < 10);
        ++per_class[static_cast<size_t>(y)];
      }
      // Fashion-MNIST is balanced: 6000 per class in train, 1000 in test.
      for (size_t c : per_class) CHECK(c == ds->size() / 10);
    }
    // First training label of Fashion-MNIST is 9 (ankle boot), first test label 9 too.
    CHECK(train->labels[0] == 9);
    CHECK(test->labels[0] == 9);
  }

  TEST_CASE("Reading chosen rows of Fashion-MNIST equals the same rows of the whole set, labels alone too") {
    auto full = LoadFashionMnist(Split::kTrain);
    REQUIRE(full.ok());
    // Every 7th row, plus rows that straddle the reader's 1 MiB chunks (1 MiB / 784 = 1337.4 rows) and the last one.
    std::vector<uint32_t> rows;
    for (uint32_t r = 0; r < 60000; r += 7) rows.push_back(r);
    for (uint32_t r : {1337u, 1338u, 2674u, 2675u, 59999u}) rows.push_back(r);
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    auto part = LoadFashionMnistRows(Split::kTrain, rows);
    REQUIRE_MESSAGE(part.ok(), part.status().ToString());
    REQUIRE(part->size() == rows.size());
    CHECK(part->num_features == 784);
    CHECK(part->num_classes == 10);
    CHECK(part->consistent());
    CHECK(part->codes.size() == rows.size() * 784);
    for (size_t k = 0; k < rows.size(); ++k) {
      CHECK(part->labels[k] == full->labels[rows[k]]);
      CHECK(std::equal(part->codes.begin() + k * 784, part->codes.begin() + (k + 1) * 784,
                       full->codes.begin() + size_t{rows[k]} * 784));
    }
    auto labels = LoadFashionMnistLabels(Split::kTrain);
    REQUIRE(labels.ok());
    CHECK(*labels == full->labels);
    auto none = LoadFashionMnistRows(Split::kTest, {});
    REQUIRE(none.ok());
    CHECK(none->size() == 0);
  }

  TEST_CASE("Rows out of range or out of order are refused, naming the row") {
    TempDir dir;
    const std::string ip = dir.Write("i", Idx({3, 2, 2}, {0, 255, 51, 102, 10, 20, 30, 40, 7, 8, 9, 250}));
    const std::string lp = dir.Write("l", Idx({3}, {2, 0, 4}));
    const std::vector<uint32_t> ok_rows = {0, 2};
    auto two = LoadIdxRows(ip, lp, ok_rows);
    REQUIRE(two.ok());
    CHECK(two->labels == std::vector<int32_t>{2, 4});
    CHECK(two->codes == std::vector<uint8_t>{0, 255, 51, 102, 7, 8, 9, 250});
    CHECK(two->num_classes == 5);
    const std::vector<uint32_t> past = {0, 3}, unordered = {2, 1}, repeated = {1, 1};
    for (const auto* rows : {&past, &unordered, &repeated}) {
      auto bad = LoadIdxRows(ip, lp, *rows);
      REQUIRE_FALSE(bad.ok());
      CHECK(Mentions(bad.error(), "row " + std::to_string(rows->back())));
    }
  }

  TEST_CASE("A small IDX pair reads back exactly, gzip'd or plain") {
    TempDir dir;
    const std::vector<uint8_t> pixels = {0, 255, 51, 102, 10, 20, 30, 40, 7, 8, 9, 250};
    const auto images = Idx({3, 2, 2}, pixels);
    const auto labels = Idx({3}, {2, 0, 4});
    for (bool gz : {false, true}) {
      CAPTURE(gz);
      const std::string ip = gz ? WriteGz(dir.Path("i.gz"), images) : dir.Write("i", images);
      const std::string lp = gz ? WriteGz(dir.Path("l.gz"), labels) : dir.Write("l", labels);
      auto ds = LoadIdx(ip, lp);
      REQUIRE_MESSAGE(ds.ok(), ds.status().ToString());
      CHECK(ds->size() == 3);
      CHECK(ds->num_features == 4);
      CHECK(ds->num_classes == 5);
      CHECK(ds->labels == std::vector<int32_t>{2, 0, 4});
      CHECK(ds->codes == pixels);
      std::vector<float> row(4);
      for (size_t r = 0; r < 3; ++r) {
        ds->CopyRow(r, row.data());
        for (size_t i = 0; i < 4; ++i) CHECK(row[i] == static_cast<float>(pixels[r * 4 + i]) / 255.0f);
      }
    }
  }

  TEST_CASE("Decoding bytes equals plain float division for every byte and several divisors") {
    std::vector<uint8_t> all(256 + 37);  // longer than a vector, with a ragged tail
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint8_t>(i * 7 + 3);
    for (size_t i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
    std::vector<float> out(all.size());
    for (float divisor : {255.0f, 1.0f, 3.0f, 7.0f, 100.0f, 127.0f, 128.0f, 256.0f, 1000.0f, 0.3f, 65535.0f}) {
      CAPTURE(divisor);
      DecodeCodes(all.data(), all.size(), divisor, out.data());
      size_t wrong = 0;
      for (size_t i = 0; i < all.size(); ++i) wrong += out[i] == static_cast<float>(all[i]) / divisor ? 0 : 1;
      CHECK(wrong == 0);
    }
  }

  TEST_CASE("A coded and a float data set with the same values copy the same rows") {
    Dataset coded;
    coded.num_features = 3;
    coded.codes = {0, 255, 17, 200, 1, 128};
    coded.labels = {0, 1};
    Dataset plain = coded;
    plain.codes.clear();
    for (uint8_t c : coded.codes) plain.features.push_back(static_cast<float>(c) / 255.0f);
    CHECK(coded.consistent());
    CHECK(plain.consistent());
    for (size_t r = 0; r < 2; ++r) {
      float a[3], b[3];
      coded.PrefetchRow(r);
      coded.CopyRow(r, a);
      plain.CopyRow(r, b);
      for (size_t i = 0; i < 3; ++i) CHECK(a[i] == b[i]);
    }
    coded.codes.pop_back();
    CHECK_FALSE(coded.consistent());
  }

  TEST_CASE("The IDX reader rejects malformed headers with a message naming the problem") {
    TempDir dir;
    const std::string good_labels = dir.Write("labels", Idx({2}, {1, 2}));
    const std::vector<uint8_t> body(2 * 4, 1);
    struct Case {
      const char* what;
      std::vector<uint8_t> bytes;
      const char* expect;
      ErrorCode code;
    };
    std::vector<uint8_t> bad_magic = Idx({2, 2, 2}, body);
    bad_magic[0] = 0x12;
    const std::vector<Case> cases = {
        {"nonzero magic prefix", bad_magic, "magic", ErrorCode::kInvalidArgument},
        {"float element type", Idx({2, 2, 2}, body, 0x0D), "element type 0x0d", ErrorCode::kInvalidArgument},
        {"zero dimensions", Idx({}, {}), "zero dimensions", ErrorCode::kInvalidArgument},
        {"header cut inside the dims", {0, 0, 8, 3, 0, 0, 0, 2, 0, 0}, "truncated IDX header", ErrorCode::kDataLoss},
        {"magic cut short", {0, 0}, "truncated IDX header", ErrorCode::kDataLoss},
        {"2^31 items", Idx({0x80000000u, 28, 28}, {}), "item count 2147483648 exceeds the limit",
         ErrorCode::kInvalidArgument},
        {"dims whose product overflows", Idx({1, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, {}),
         "per-item size 4294967295 exceeds the limit", ErrorCode::kInvalidArgument},
        {"items times size over the limit", Idx({1u << 26, 4096, 4096}, {}), "total size",
         ErrorCode::kInvalidArgument},
        {"zero-sized dimension", Idx({2, 0, 4}, {}), "dimension 1 is zero", ErrorCode::kInvalidArgument},
        {"only one dimension", Idx({2}, {1, 2}), "at least 2 dimensions", ErrorCode::kInvalidArgument},
        {"pixel data cut short", Idx({2, 2, 2}, std::vector<uint8_t>(5, 1)),
         "truncated pixel data: expected 8 bytes, got 5", ErrorCode::kDataLoss},
    };
    for (const Case& c : cases) {
      CAPTURE(c.what);
      for (bool gz : {false, true}) {
        CAPTURE(gz);
        const std::string path = gz ? WriteGz(dir.Path("bad.gz"), c.bytes) : dir.Write("bad", c.bytes);
        auto ds = LoadIdx(path, good_labels);
        REQUIRE_FALSE(ds.ok());
        CHECK(ds.error().code() == c.code);
        CHECK_MESSAGE(Mentions(ds.error(), c.expect), ds.error().message());
        CHECK_MESSAGE(Mentions(ds.error(), path), ds.error().message());
      }
    }
  }

  TEST_CASE("The IDX reader checks the label file against the images") {
    TempDir dir;
    const std::string images = dir.Write("images", Idx({2, 2, 2}, std::vector<uint8_t>(8, 3)));
    auto mismatch = LoadIdx(images, dir.Write("l3", Idx({3}, {1, 2, 3})));
    REQUIRE_FALSE(mismatch.ok());
    CHECK(Mentions(mismatch.error(), "label count 3 does not match image count 2"));
    auto two_dims = LoadIdx(images, dir.Write("l2d", Idx({2, 1}, {1, 2})));
    REQUIRE_FALSE(two_dims.ok());
    CHECK(Mentions(two_dims.error(), "must have 1 dimension"));
    auto short_labels = LoadIdx(images, dir.Write("lshort", Idx({2}, {1})));
    REQUIRE_FALSE(short_labels.ok());
    CHECK(short_labels.error().code() == ErrorCode::kDataLoss);
    CHECK(Mentions(short_labels.error(), "truncated label data"));
    auto missing = LoadIdx(dir.Path("nope"), dir.Path("nope2"));
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code() == ErrorCode::kNotFound);
    CHECK(Mentions(missing.error(), "nope"));
  }

  TEST_CASE("A corrupt gzip stream is reported as data loss") {
    TempDir dir;
    std::vector<uint8_t> bytes = Idx({4, 8, 8}, std::vector<uint8_t>(256, 77));
    const std::string path = WriteGz(dir.Path("c.gz"), bytes);
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Flip bytes in the deflate body, past the 10-byte gzip header.
    for (size_t i = 12; i < gz.size() - 8; i += 3) gz[i] ^= 0x5A;
    auto ds = LoadIdx(dir.Write("c2.gz", gz), dir.Write("l", Idx({4}, {0, 1, 2, 3})));
    REQUIRE_FALSE(ds.ok());
    CHECK(ds.error().code() != ErrorCode::kInternal);
  }

  TEST_CASE("Fashion-MNIST from a directory without the files is not found") {
    TempDir dir;
    auto ds = LoadFashionMnist(Split::kTest, dir.Path(""));
    REQUIRE_FALSE(ds.ok());
    CHECK(ds.error().code() == ErrorCode::kNotFound);
    CHECK(Mentions(ds.error(), "t10k-images-idx3-ubyte.gz"));
  }
}

}  // namespace
}  // namespace frugal
