// The client agent's I/O-free parts: device policy over a power_supply tree
// laid out in a temporary directory, reconnect backoff, the residual file,
// and configuration parsing.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "data/temp_dir.h"
#include "frugal/client/agent.h"
#include "frugal/client/config.h"
#include "frugal/client/device_policy.h"

namespace frugal::client {
namespace {

void WriteSupply(const testing::TempDir& dir, const std::string& name, const std::map<std::string, std::string>& files) {
  std::filesystem::create_directories(dir.Path(name));
  for (const auto& [f, v] : files) std::ofstream(dir.Path(name + "/" + f)) << v << "\n";
}

const char* kMinimalClient = R"(
name = "dev-1"
[coordinator]
port = 7443
[tls]
ca_cert = "ca.crt"
cert = "dev-1.crt"
key = "dev-1.key"
)";

}  // namespace

TEST_SUITE("coordinator") {
  TEST_CASE("a discharging battery below the threshold declines and charging accepts") {
    testing::TempDir dir;
    WriteSupply(dir, "BAT0", {{"type", "Battery"}, {"capacity", "12"}, {"status", "Discharging"}});
    WriteSupply(dir, "AC", {{"type", "Mains"}, {"online", "0"}});
    PolicyConfig policy;
    policy.power_supply_root = dir.Path("");
    PowerState p = ReadPowerState(policy.power_supply_root);
    CHECK(p.has_battery);
    REQUIRE(p.battery_percent.has_value());
    CHECK(*p.battery_percent == 12);
    CHECK_FALSE(p.charging);
    PolicyDecision d = DecideTask(policy, p, "wifi");
    CHECK_FALSE(d.accept);
    CHECK(d.reason.find("12%") != std::string::npos);

    WriteSupply(dir, "AC", {{"type", "Mains"}, {"online", "1"}});
    p = ReadPowerState(policy.power_supply_root);
    CHECK(p.charging);
    CHECK(DecideTask(policy, p, "wifi").accept);
  }

  TEST_CASE("a machine without a power_supply tree is mains powered") {
    const PowerState p = ReadPowerState("/nonexistent/power_supply");
    CHECK_FALSE(p.has_battery);
    CHECK(p.charging);
    PolicyConfig policy;
    policy.require_charging = true;
    CHECK(DecideTask(policy, p, "wifi").accept);
  }

  TEST_CASE("metered networks are declined only when metered use is not allowed") {
    PowerState mains;
    mains.charging = true;
    PolicyConfig policy;
    CHECK(DecideTask(policy, mains, "lte").accept);
    policy.allow_metered = false;
    CHECK_FALSE(DecideTask(policy, mains, "lte").accept);
    CHECK(DecideTask(policy, mains, "wifi").accept);
    policy.network = "metered";
    CHECK_FALSE(DecideTask(policy, mains, "wifi").accept);
    policy.network = "unmetered";
    CHECK(DecideTask(policy, mains, "5g").accept);
  }

  TEST_CASE("backoff grows exponentially with jitter and stays under its ceiling") {
    Rng rng(7);
    for (uint32_t attempt = 0; attempt < 40; ++attempt) {
      const double expected = std::min(30.0, 0.5 * std::pow(2.0, std::min(attempt, 30u)));
      for (int k = 0; k < 20; ++k) {
        const double w = BackoffSeconds(0.5, 30, attempt, rng);
        CHECK(w >= 0.5 * expected);
        CHECK(w < expected);
      }
    }
  }

  TEST_CASE("the residual file round-trips and refuses corruption and another dimension") {
    testing::TempDir dir;
    const std::string path = dir.Path("residual.bin");
    std::vector<float> r(1000);
    for (size_t i = 0; i < r.size(); ++i) r[i] = 0.001f * static_cast<float>(i) - 0.3f;
    REQUIRE(SaveResidual(path, r).ok());
    auto back = LoadResidual(path, r.size());
    REQUIRE(back.ok());
    CHECK(*back == r);
    CHECK(LoadResidual(path, 999).error().code() == ErrorCode::kDataLoss);
    CHECK(LoadResidual(dir.Path("none.bin"), 10).error().code() == ErrorCode::kNotFound);
    {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(100);
      f.put('\x7f');
    }
    CHECK(LoadResidual(path, r.size()).error().code() == ErrorCode::kDataLoss);
  }

  TEST_CASE("client configuration applies overrides and refuses unknown keys") {
    auto c = ParseClientConfig(kMinimalClient, "client.toml", {"data.index=3", "device.radio=lte"});
    REQUIRE(c.ok());
    CHECK(c->data.index == 3);
    CHECK(c->radio == "lte");
    CHECK(c->data.source == "fmnist-partition");
    auto bad = ParseClientConfig(kMinimalClient, "client.toml", {"data.indx=3"});
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message().find("data.indx") != std::string::npos);
    auto out_of_range = ParseClientConfig(kMinimalClient, "client.toml", {"data.index=10"});
    REQUIRE_FALSE(out_of_range.ok());
    CHECK(out_of_range.error().message().find("data.index") != std::string::npos);
    auto holdout = ParseClientConfig(kMinimalClient, "client.toml", {"data.holdout=1.5"});
    REQUIRE_FALSE(holdout.ok());
    CHECK(holdout.error().message().find("data.holdout") != std::string::npos);
  }

  TEST_CASE("data.holdout: the agent trains on its partition less a seeded fifth and evaluates on that fifth") {
    auto c = ParseClientConfig(kMinimalClient, "client.toml", {"data.index=3", "data.partition=\"iid\""});
    REQUIRE(c.ok());
    auto whole = LoadLocalData(c->data);
    REQUIRE(whole.ok());
    c->data.holdout = 0.2;
    auto split = LoadLocalData(c->data);
    REQUIRE(split.ok());
    REQUIRE(whole->indices.size() == 6000);
    CHECK(whole->holdout.empty());
    CHECK(split->holdout.size() == 1200);
    CHECK(split->indices.size() == 4800);
    std::vector<uint32_t> both = split->indices;
    both.insert(both.end(), split->holdout.begin(), split->holdout.end());
    std::sort(both.begin(), both.end());
    std::vector<uint32_t> all = whole->indices;
    std::sort(all.begin(), all.end());
    CHECK(both == all);
    // Same split on every load (the seed and index fix it).
    auto again = LoadLocalData(c->data);
    REQUIRE(again.ok());
    CHECK(again->holdout == split->holdout);
  }
}

}  // namespace frugal::client
