#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "frugal/core/streams.h"
#include "frugal/data/dataset.h"
#include "frugal/data/partition.h"

namespace frugal {
namespace {

// Every index in [0, n) appears in exactly one client.
bool ExactlyOnce(const Partition& p, size_t n) {
  std::vector<int> seen(n, 0);
  for (const auto& client : p) {
    for (uint32_t i : client) {
      if (i >= n || seen[i]++ != 0) return false;
    }
  }
  return std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; });
}

// Labels only: partitioning never looks at features, so a balanced synthetic
// label vector (10 classes x 1000) stands in for a data set here.
std::vector<int32_t> BalancedLabels(size_t per_class, size_t classes) {
  std::vector<int32_t> y;
  for (size_t i = 0; i < per_class * classes; ++i) y.push_back(static_cast<int32_t>(i % classes));
  return y;
}

// Mean over clients of the largest class share: 1/classes when IID, 1 when each client holds one class.
double MeanMaxClassFraction(const Partition& p, const std::vector<int32_t>& y, size_t classes) {
  double sum = 0.0;
  for (const auto& client : p) {
    std::vector<size_t> count(classes, 0);
    for (uint32_t i : client) ++count[static_cast<size_t>(y[i])];
    sum += static_cast<double>(*std::max_element(count.begin(), count.end())) / static_cast<double>(client.size());
  }
  return sum / static_cast<double>(p.size());
}

TEST_SUITE("data") {
  TEST_CASE("IID partition assigns every example once, evenly, reproducibly per seed") {
    const Partition a = PartitionIid(1003, 10, 1).value();
    REQUIRE(a.size() == 10);
    CHECK(ExactlyOnce(a, 1003));
    for (const auto& client : a) {
      CHECK(client.size() >= 100);
      CHECK(client.size() <= 101);
      CHECK(std::is_sorted(client.begin(), client.end()));
    }
    CHECK(PartitionIid(1003, 10, 1).value() == a);
    CHECK(PartitionIid(1003, 10, 2).value() != a);
    auto none = PartitionIid(10, 0, 1);
    REQUIRE_FALSE(none.ok());
    CHECK(none.error().message().find("0 clients") != std::string::npos);
    // More clients than examples: some clients are empty, still exactly once.
    const Partition sparse = PartitionIid(3, 5, 1).value();
    CHECK(ExactlyOnce(sparse, 3));
  }

  TEST_CASE("Dirichlet partition assigns every example once and gives each client at least ten") {
    const auto y = BalancedLabels(1000, 10);
    for (double alpha : {100.0, 1.0, 0.1}) {
      CAPTURE(alpha);
      const Partition p = PartitionDirichlet(y, 10, 50, alpha, 7).value();
      REQUIRE(p.size() == 50);
      CHECK(ExactlyOnce(p, y.size()));
      for (const auto& client : p) CHECK(client.size() >= kDirichletMinSize);
      CHECK(PartitionDirichlet(y, 10, 50, alpha, 7).value() == p);
      CHECK(PartitionDirichlet(y, 10, 50, alpha, 8).value() != p);
    }
  }

  TEST_CASE("Dirichlet label skew grows as alpha falls") {
    const auto y = BalancedLabels(1000, 10);
    const double skew100 = MeanMaxClassFraction(PartitionDirichlet(y, 10, 50, 100.0, 3).value(), y, 10);
    const double skew1 = MeanMaxClassFraction(PartitionDirichlet(y, 10, 50, 1.0, 3).value(), y, 10);
    const double skew01 = MeanMaxClassFraction(PartitionDirichlet(y, 10, 50, 0.1, 3).value(), y, 10);
    INFO("mean max-class fraction: alpha 100 ", skew100, ", alpha 1 ", skew1, ", alpha 0.1 ", skew01);
    CHECK(skew100 < 0.2);  // near IID (0.1)
    CHECK(skew100 < skew1);
    CHECK(skew1 < skew01);
    CHECK(skew01 > 0.6);
  }

  TEST_CASE("Dirichlet partition rejects bad arguments with an error naming them") {
    const std::vector<int32_t> y = {0, 1, 2, 5};
    auto Message = [](const Result<Partition>& r) { return r.ok() ? std::string("ok") : r.error().message(); };
    CHECK(Message(PartitionDirichlet(y, 3, 2, 1.0, 1)).find("label 5 of example 3 is outside [0, 3)") != std::string::npos);
    CHECK(Message(PartitionDirichlet(y, 6, 0, 1.0, 1)).find("0 clients") != std::string::npos);
    CHECK(Message(PartitionDirichlet(y, 6, 2, 0.0, 1)).find("alpha must be positive") != std::string::npos);
    CHECK(Message(PartitionDirichlet(y, 6, 2, std::numeric_limits<double>::infinity(), 1)).find("alpha") !=
          std::string::npos);
  }

  TEST_CASE("Shards of the real Fashion-MNIST labels give each client exactly k classes") {
    auto train = LoadFashionMnist(Split::kTrain);
    REQUIRE_MESSAGE(train.ok(), train.status().ToString());
    const std::vector<int32_t>& y = train->labels;
    // McMahan et al.: 100 clients x 2 shards of 300; 6000 per class makes every shard label-pure.
    for (size_t k : {size_t{1}, size_t{2}, size_t{5}}) {
      CAPTURE(k);
      const Partition p = PartitionShards(y, 100, k, 11).value();
      REQUIRE(p.size() == 100);
      CHECK(ExactlyOnce(p, y.size()));
      for (const auto& client : p) {
        CHECK(client.size() == 600);  // 60000 / (100 * k) per shard, k shards
        std::set<int32_t> classes;
        for (uint32_t i : client) classes.insert(y[i]);
        CHECK(classes.size() == k);
      }
    }
    CHECK(PartitionShards(y, 100, 2, 11).value() == PartitionShards(y, 100, 2, 11).value());
    CHECK(PartitionShards(y, 100, 2, 11).value() != PartitionShards(y, 100, 2, 12).value());
  }

  TEST_CASE("Shards use every example even when the count does not divide") {
    const auto y = BalancedLabels(101, 10);  // 1010 examples, 3 clients x 4 shards
    const Partition p = PartitionShards(y, 3, 4, 5).value();
    REQUIRE(p.size() == 3);
    CHECK(ExactlyOnce(p, y.size()));
    CHECK_FALSE(PartitionShards(y, 0, 4, 5).ok());
    CHECK_FALSE(PartitionShards(y, 3, 0, 5).ok());
    auto few = PartitionShards(std::vector<int32_t>(5, 0), 3, 2, 5);
    REQUIRE_FALSE(few.ok());
    CHECK(few.error().message().find("cannot cut 5 examples into 6 shards") != std::string::npos);
  }

  TEST_CASE("holdout split: ceil(fraction * n) held out, disjoint, order kept, reproducible per seed") {
    std::vector<uint32_t> ex;
    for (uint32_t i = 0; i < 6000; ++i) ex.push_back(3 * i + 7);
    const HoldoutSplit a = SplitHoldout(ex, 0.2, 11);
    CHECK(a.holdout.size() == 1200);
    CHECK(a.train.size() == 4800);
    CHECK(std::is_sorted(a.train.begin(), a.train.end()));  // the input's order (ascending here)
    CHECK(std::is_sorted(a.holdout.begin(), a.holdout.end()));
    std::vector<uint32_t> both = a.train;
    both.insert(both.end(), a.holdout.begin(), a.holdout.end());
    std::sort(both.begin(), both.end());
    CHECK(both == ex);
    // Picked at random, not a contiguous block: held-out examples from both ends.
    CHECK(a.holdout.front() < ex[600]);
    CHECK(a.holdout.back() > ex[5400]);
    CHECK(SplitHoldout(ex, 0.2, 11).holdout == a.holdout);
    CHECK(SplitHoldout(ex, 0.2, 12).holdout != a.holdout);
    // Rounded up, as train_test_split does; never everything; 0 holds out nothing.
    const std::vector<uint32_t> seven{5, 1, 4, 2, 6, 0, 3};
    const HoldoutSplit b = SplitHoldout(seven, 0.2, 1);
    CHECK(b.holdout.size() == 2);
    std::vector<uint32_t> kept;
    for (uint32_t x : seven) {
      if (std::find(b.holdout.begin(), b.holdout.end(), x) == b.holdout.end()) kept.push_back(x);
    }
    CHECK(b.train == kept);  // unsorted input: its order survives in the train part
    CHECK(SplitHoldout(std::vector<uint32_t>{9}, 0.5, 1).train == std::vector<uint32_t>{9});
    CHECK(SplitHoldout(seven, 0.0, 1).train == seven);
    CHECK(SplitHoldout(seven, 0.0, 1).holdout.empty());
    CHECK(SplitHoldout(std::vector<uint32_t>{}, 0.2, 1).train.empty());
  }
}

}  // namespace
}  // namespace frugal

namespace frugal {

TEST_SUITE("data") {
  TEST_CASE("PartitionForClient is the fleet's share on the run's partition stream, less its seeded holdout") {
    std::vector<int32_t> y(3000);
    for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int32_t>((i * 7) % 10);
    PartitionSpec spec{.scheme = "dirichlet", .clients = 12, .alpha = 0.3, .shards_per_client = 2, .seed = 9,
                       .holdout = 0.25};
    auto fleet = PartitionFleet(y, 10, spec);
    REQUIRE(fleet.ok());
    // The partition stream of the run seed, not the raw seed.
    CHECK(*fleet == PartitionDirichlet(y, 10, 12, 0.3, StreamSeed(9, SeedStream::kPartition)).value());
    CHECK(*fleet != PartitionDirichlet(y, 10, 12, 0.3, 9).value());
    for (size_t i = 0; i < 12; ++i) {
      auto mine = PartitionForClient(y, 10, spec, i);
      REQUIRE(mine.ok());
      const HoldoutSplit expect = SplitHoldout((*fleet)[i], 0.25, StreamSeed(9, SeedStream::kHoldout, i));
      CHECK(mine->train == expect.train);
      CHECK(mine->holdout == expect.holdout);
      CHECK(mine->train.size() + mine->holdout.size() == (*fleet)[i].size());
    }
    spec.scheme = "shards";
    CHECK(PartitionFleet(y, 10, spec).value() == PartitionShards(y, 12, 2, StreamSeed(9, SeedStream::kPartition)).value());
    spec.scheme = "iid";
    CHECK(PartitionFleet(y, 10, spec).value() == PartitionIid(y.size(), 12, StreamSeed(9, SeedStream::kPartition)).value());
    spec.scheme = "zipf";
    auto unknown = PartitionFleet(y, 10, spec);
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.error().message().find("zipf") != std::string::npos);
    spec.scheme = "iid";
    auto outside = PartitionForClient(y, 10, spec, 12);
    REQUIRE_FALSE(outside.ok());
    CHECK(outside.error().message().find("12") != std::string::npos);
  }
}

}  // namespace frugal
