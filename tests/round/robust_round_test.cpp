// Robust aggregation in the round path (server.robust): the engine applies the
// rule's aggregate, reports its verdicts, keeps its state across a restart and
// needs the server's reference for fltrust; the account counts the verdicts
// and writes them into the ledger; the settings reader parses and checks the keys.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "frugal/codec/uplink.h"
#include "frugal/core/config_reader.h"
#include "frugal/core/random.h"
#include "frugal/energy/profiles.h"
#include "frugal/round/accounting.h"
#include "frugal/round/engine.h"
#include "frugal/round/settings.h"
#include "frugal/round/trusted.h"
#include "round_test_util.h"

namespace frugal {
namespace {

using round_test::DenseUpdate;
using round_test::RandomVector;
using round_test::Snapshot;

double Norm(std::span<const float> v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

// Runs one dense round of the given updates (client ids 1..n, weight 1) and
// returns the outcome; the model moves by the aggregate (server lr 1).
RoundOutcome RunRound(RoundEngine& e, uint32_t round, const std::vector<std::vector<float>>& updates,
                      const SparseUpdate* reference = nullptr) {
  std::vector<uint64_t> ids;
  for (uint64_t c = 1; c <= updates.size(); ++c) ids.push_back(c);
  REQUIRE(e.OpenRound(round, ids).ok());
  for (uint64_t c = 1; c <= updates.size(); ++c) REQUIRE(e.Ingest(round, c, e.version(), DenseUpdate(updates[c - 1]), 1.0).ok());
  if (reference != nullptr) REQUIRE(e.SetReference(*reference).ok());
  auto out = e.CloseRound(1);
  REQUIRE_MESSAGE(out.ok(), out.status().ToString());
  return *out;
}

// A phone on Wi-Fi that downloaded 1,000 bytes and sent 100, for the account's ledger rows.
Participation PhoneOnWifi(const EnergyProfiles& profiles, uint32_t client) {
  Participation p;
  p.client = client;
  p.device = *profiles.Device("phone-mid");
  p.radio = *profiles.Radio("wifi");
  p.region = *profiles.Region("world");
  p.bytes_down = 1000;
  p.bytes_up = 100;
  p.flops = 1e6;
  return p;
}

TEST_SUITE("round") {
  TEST_CASE("server.robust = norm_bound: the engine clips an oversized update and says so") {
    const size_t d = 50;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    cfg.robust.rule = RobustRule::kNormBound;
    cfg.robust.clip_bound = 1.0;
    RoundEngine e(std::vector<float>(d, 0.0f), cfg);
    std::vector<std::vector<float>> updates = {RandomVector(d, 1, 0.01f), RandomVector(d, 2, 0.01f), RandomVector(d, 3, 100.0f)};
    const RoundOutcome out = RunRound(e, 1, updates);
    REQUIRE(out.verdicts.size() == 3);
    CHECK(out.verdicts[0].client == 1);
    CHECK(out.verdicts[0].action == RobustAction::kKept);
    CHECK(out.verdicts[2].client == 3);
    CHECK(out.verdicts[2].action == RobustAction::kClipped);
    CHECK_FALSE(out.verdicts[2].reason.empty());
    // Plain reference: the mean of the two small updates and the big one scaled to norm 1.
    const double scale = 1.0 / Norm(updates[2]);
    for (size_t j = 0; j < d; ++j) {
      const double expect = (updates[0][j] + updates[1][j] + updates[2][j] * scale) / 3.0;
      CHECK(e.global_model()[j] == doctest::Approx(expect).epsilon(1e-5));
    }
    CHECK(Norm(e.global_model()) < 1.0);  // without the bound the step would be ~ 100 * sqrt(50) / 3
  }

  TEST_CASE("server.rlr in the engine: the step is reversed where only one update pushes, and the verdicts say so") {
    // Two clients agree on coordinates 0-2, a third alone pushes coordinate 5
    // (dense updates: the zeros are carried and vote 0). theta 2: only 0-2
    // keep their step; 5, with one vote, is reversed (the plain mean is 5/3).
    const size_t d = 6;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    cfg.robust.rlr = true;
    cfg.robust.rlr_threshold = 2;
    RoundEngine e(std::vector<float>(d, 0.0f), cfg);
    const std::vector<std::vector<float>> updates = {{1, 1, 1, 0, 0, 0}, {1, 1, 1, 0, 0, 0}, {0, 0, 0, 0, 0, 5}};
    const RoundOutcome out = RunRound(e, 1, updates);
    for (size_t j = 0; j < 3; ++j) CHECK(e.global_model()[j] == doctest::Approx(2.0 / 3.0));
    CHECK(e.global_model()[3] == 0.0f);
    CHECK(e.global_model()[5] == doctest::Approx(-5.0 / 3.0));
    REQUIRE(out.verdicts.size() == 3);
    CHECK(out.verdicts[2].action == RobustAction::kDownweighted);
    CHECK(out.verdicts[2].reason.find("sign vote fell short of 2: step negated (1 coordinates this round)") !=
          std::string::npos);
  }

  TEST_CASE("server.robust = none folds exactly as before: the weighted mean") {
    const size_t d = 40;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    RoundEngine e(std::vector<float>(d, 0.0f), cfg);
    std::vector<std::vector<float>> updates = {RandomVector(d, 4, 1.0f), RandomVector(d, 5, 1.0f)};
    const RoundOutcome out = RunRound(e, 1, updates);
    for (const RobustVerdict& v : out.verdicts) CHECK(v.action == RobustAction::kKept);
    for (size_t j = 0; j < d; ++j) CHECK(e.global_model()[j] == static_cast<float>((double{updates[0][j]} + updates[1][j]) / 2));
  }

  TEST_CASE("fltrust needs the server's reference for the round, and rejects an update opposed to it") {
    const size_t d = 30;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    cfg.robust.rule = RobustRule::kFlTrust;
    RoundEngine e(std::vector<float>(d, 0.0f), cfg);
    const std::vector<float> good = RandomVector(d, 6, 1.0f);
    std::vector<float> flipped(good);
    for (float& x : flipped) x = -x;
    REQUIRE(e.OpenRound(1, std::vector<uint64_t>{1, 2}).ok());
    REQUIRE(e.Ingest(1, 1, 1, DenseUpdate(good), 1.0).ok());
    REQUIRE(e.Ingest(1, 2, 1, DenseUpdate(flipped), 1.0).ok());
    auto missing = e.CloseRound(1);
    REQUIRE_FALSE(missing.ok());  // no reference set
    CHECK(e.version() == 1);

    SparseUpdate reference;
    reference.dim = d;
    for (uint32_t j = 0; j < d; ++j) reference.indices.push_back(j), reference.values.push_back(good[j] * 0.5f);
    SparseUpdate wrong = reference;
    wrong.dim = d + 1;
    REQUIRE(e.OpenRound(2, std::vector<uint64_t>{1, 2}).ok());
    CHECK_FALSE(e.SetReference(wrong).ok());
    REQUIRE(e.Ingest(2, 1, 1, DenseUpdate(good), 1.0).ok());
    REQUIRE(e.Ingest(2, 2, 1, DenseUpdate(flipped), 1.0).ok());
    REQUIRE(e.SetReference(reference).ok());
    auto out = e.CloseRound(1);
    REQUIRE(out.ok());
    REQUIRE(out->verdicts.size() == 2);
    // Cosine 1 up to rounding: kept, or down-weighted by a hair.
    CHECK(out->verdicts[0].action != RobustAction::kRejected);
    CHECK(out->verdicts[0].factor > 0.999);
    CHECK(out->verdicts[1].action == RobustAction::kRejected);
    // The kept update is rescaled to the reference's norm: the model moves along `good` by |reference|.
    CHECK(Norm(e.global_model()) == doctest::Approx(Norm(reference.values)).epsilon(1e-4));
  }

  TEST_CASE("a restored engine carries the robust rule's state (centered clipping's centre)") {
    const size_t d = 64;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    cfg.robust.rule = RobustRule::kCenteredClip;
    RoundEngine a(std::vector<float>(d, 0.0f), cfg);
    auto round_updates = [&](uint32_t r) {
      return std::vector<std::vector<float>>{RandomVector(d, 10 * r + 1, 0.1f), RandomVector(d, 10 * r + 2, 0.1f),
                                             RandomVector(d, 10 * r + 3, 5.0f)};
    };
    for (uint32_t r = 1; r <= 3; ++r) RunRound(a, r, round_updates(r));
    EngineState state = Snapshot(a);
    auto b = RoundEngine::Restore(state, cfg);
    REQUIRE(b.ok());
    RunRound(a, 4, round_updates(4));
    RunRound(**b, 4, round_updates(4));
    CHECK(std::memcmp(a.global_model().data(), (*b)->global_model().data(), 4 * d) == 0);
    // A state saved under another rule (norm_bound keeps only its bound) does
    // not fit, and the error says what it expected.
    EngineConfig plain = cfg;
    plain.robust.rule = RobustRule::kNormBound;
    RoundEngine c(std::vector<float>(d, 0.0f), plain);
    state.server_state = c.ServerState();
    REQUIRE(a.ServerState().size() != state.server_state.size());
    auto bad = RoundEngine::Restore(state, cfg);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message().find("robust rule") != std::string::npos);
  }

  TEST_CASE("a restored engine carries FoolsGold's client histories, whose size grows with the clients seen") {
    const size_t d = 48;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    cfg.robust.rule = RobustRule::kFoolsGold;
    RoundEngine a(std::vector<float>(d, 0.0f), cfg);
    const std::vector<float> sybil = RandomVector(d, 77, 0.2f);
    auto round_updates = [&](uint32_t r) {
      return std::vector<std::vector<float>>{RandomVector(d, 10 * r + 1, 0.1f), sybil, sybil};
    };
    RunRound(a, 1, round_updates(1));
    const size_t after_one = a.ServerState().size();
    for (uint32_t r = 2; r <= 3; ++r) RunRound(a, r, round_updates(r));
    CHECK(a.ServerState().size() == after_one);  // the same three clients: no new rows
    EngineState state = Snapshot(a);
    auto b = RoundEngine::Restore(state, cfg);
    REQUIRE(b.ok());
    RunRound(a, 4, round_updates(4));
    RunRound(**b, 4, round_updates(4));
    CHECK(std::memcmp(a.global_model().data(), (*b)->global_model().data(), 4 * d) == 0);
    CHECK(a.ServerState() == (*b)->ServerState());
    // A state cut short by one float is no whole number of client records.
    state.server_state.resize(state.server_state.size() - 4);
    auto bad = RoundEngine::Restore(state, cfg);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message().find("foolsgold state") != std::string::npos);
  }

  TEST_CASE("a restored engine continues FedAdam/FedYogi/FedAdagrad bit for bit: the moments are in ServerState") {
    const size_t d = 300;
    for (ServerOptimizerKind kind : {ServerOptimizerKind::kAdam, ServerOptimizerKind::kYogi,
                                     ServerOptimizerKind::kAdagrad}) {
      CAPTURE(ServerOptimizerName(kind));
      EngineConfig cfg;
      cfg.pipeline = Pipeline::kFrugal;
      cfg.broadcast.density = 0.05;
      cfg.server_opt.kind = kind;
      cfg.server_opt.learning_rate = 0.03f;
      RoundEngine a(RandomVector(d, 40, 0.1f), cfg);
      auto updates = [&](uint32_t r) {
        return std::vector<std::vector<float>>{RandomVector(d, 50 * r + 1, 0.01f), RandomVector(d, 50 * r + 2, 0.01f)};
      };
      for (uint32_t r = 1; r <= 3; ++r) RunRound(a, r, updates(r));
      EngineState state = Snapshot(a);
      CHECK(state.server_state.size() == 4 * (d + 2 * d));  // residual, then m and v
      auto b = RoundEngine::Restore(state, cfg);
      REQUIRE(b.ok());
      state.server_state.clear();  // zero moments: the run diverges
      auto c = RoundEngine::Restore(state, cfg);
      REQUIRE(c.ok());
      for (RoundEngine* e : {&a, b->get(), c->get()}) RunRound(*e, 4, updates(4));
      CHECK(std::memcmp(a.global_model().data(), (*b)->global_model().data(), 4 * d) == 0);
      CHECK(std::memcmp(a.global_model().data(), (*c)->global_model().data(), 4 * d) != 0);
    }
  }

  TEST_CASE("an update with more values than the round's uplink density is refused as too dense") {
    const size_t d = 200;
    EngineConfig cfg;
    cfg.uplink_density = 0.05;  // 10 values of 200
    RoundEngine e(std::vector<float>(d, 0.0f), cfg);
    REQUIRE(e.OpenRound(1, std::vector<uint64_t>{1, 2, 3}).ok());
    RejectReason why{};
    auto dense = e.Ingest(1, 1, 1, DenseUpdate(RandomVector(d, 30, 1.0f)), 1.0, &why);
    REQUIRE_FALSE(dense.ok());
    CHECK(why == RejectReason::kTooDense);
    CHECK(RejectReasonName(why) == "too_dense");
    CHECK(dense.error().message().find("carries 200 values") != std::string::npos);
    UplinkConfig up;
    up.density = 0.06;  // 12 values: over the limit, a well-formed sparse update all the same
    auto over = EncodeUplink(RandomVector(d, 31, 1.0f), up, {});
    REQUIRE(over.ok());
    CHECK_FALSE(e.Ingest(1, 2, 1, *over, 1.0, &why).ok());
    CHECK(why == RejectReason::kTooDense);
    up.density = 0.05;
    auto fits = EncodeUplink(RandomVector(d, 32, 1.0f), up, {});
    REQUIRE(fits.ok());
    CHECK(e.Ingest(1, 3, 1, *fits, 1.0).ok());
    CHECK(UplinkKeepCount(0.05, d) == 10);
  }

  TEST_CASE("the account counts the verdicts and writes each non-kept one into its client's ledger row") {
    auto profiles = EnergyProfiles::LoadDefault();
    REQUIRE(profiles.ok());
    RoundAccount account("run", 3, 12.0);
    for (uint32_t c : {4u, 5u, 6u, 7u}) account.Add(PhoneOnWifi(*profiles, c));
    const std::vector<RobustVerdict> verdicts = {
        {4, RobustAction::kKept, 1.0, ""},
        {5, RobustAction::kClipped, 0.5, "norm 2 > bound 1"},
        {6, RobustAction::kRejected, 0.0, "multi-krum score 9"},
        {7, RobustAction::kDownweighted, 0.25, "cosine 0.25"},
    };
    account.SetVerdicts(verdicts);
    CHECK(account.record().robust_clipped == 1);
    CHECK(account.record().robust_rejected == 1);
    CHECK(account.record().robust_downweighted == 1);
    const auto& rows = account.rows();
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].robust.empty());
    CHECK(rows[1].robust == "clipped: norm 2 > bound 1");
    CHECK(rows[2].robust == "rejected: multi-krum score 9");
    CHECK(rows[3].robust == "downweighted: cosine 0.25");
  }

  TEST_CASE("server.robust = bulyan at 10 updates: the outcome and every ledger row, kept ones too, say its bound does not hold") {
    const size_t d = 30;
    auto profiles = EnergyProfiles::LoadDefault();
    REQUIRE(profiles.ok());
    for (size_t n : {10u, 11u}) {
      EngineConfig cfg;
      cfg.pipeline = Pipeline::kDense;
      cfg.robust.rule = RobustRule::kBulyan;
      RoundEngine e(std::vector<float>(d, 0.0f), cfg);
      std::vector<std::vector<float>> updates;
      for (size_t i = 0; i < n; ++i) updates.push_back(RandomVector(d, 40 + i, 0.1f));
      const RoundOutcome out = RunRound(e, 1, updates);
      REQUIRE(out.verdicts.size() == n);
      CHECK(out.robust_shortfall == RobustBoundShortfall(cfg.robust, n));
      CHECK(out.robust_shortfall.empty() == (n == 11));
      RoundAccount account("run", 1, 12.0);
      for (uint32_t c = 1; c <= n; ++c) account.Add(PhoneOnWifi(*profiles, c));
      account.SetVerdicts(out.verdicts);
      // Bulyan selects n - 2f = 6 (10) or 7 (11) of them; the others are rejected.
      CHECK(account.record().robust_rejected == 4);
      for (size_t i = 0; i < n; ++i) {
        INFO("n " << n << " client " << i + 1);
        const std::string& robust = account.rows()[i].robust;
        if (n == 11) {
          CHECK(robust.find("does not hold") == std::string::npos);
          continue;
        }
        CHECK(robust.find("bulyan's bound n >= 4f + 3 does not hold: n = 10 updates, f = 2") != std::string::npos);
        CHECK(robust.starts_with(std::string(RobustActionName(out.verdicts[i].action)) + ": "));
      }
    }
  }

  TEST_CASE("the trusted set is a seeded sample of distinct indices; a bad size is refused") {
    auto a = TrustedIndices(7, 1000, 100), b = TrustedIndices(7, 1000, 100), c = TrustedIndices(8, 1000, 100);
    REQUIRE(a.ok());
    REQUIRE(c.ok());
    CHECK(*a == *b);
    CHECK(*a != *c);
    CHECK(std::is_sorted(a->begin(), a->end()));
    CHECK(std::adjacent_find(a->begin(), a->end()) == a->end());
    CHECK(a->back() < 1000);
    CHECK_FALSE(TrustedIndices(7, 1000, 0).ok());
    auto too_many = TrustedIndices(7, 10, 11);
    REQUIRE_FALSE(too_many.ok());
    CHECK(too_many.error().message().find("server.trusted_examples") != std::string::npos);
  }

  TEST_CASE("FLAME's noise seed comes from the run's seed: two seeds draw different noise, one seed the same") {
    auto noise_of = [](uint64_t seed) {
      auto t = ParseToml("seed = " + std::to_string(seed) + "\n[server]\nrobust = \"flame\"\nflame_noise = 0.01\n",
                         "scenario.toml");
      REQUIRE(t.ok());
      RunSettings s;
      ConfigReader r(*t);
      REQUIRE(ReadRunSettings(r, s).ok());
      const size_t d = 64;
      RobustAggregator agg(d, Averaging::kAll, s.engine.robust);
      std::vector<SparseUpdate> us;
      for (uint64_t c = 0; c < 3; ++c) {
        SparseUpdate u{static_cast<uint32_t>(d), {}, RandomVector(d, 10 + c)};
        for (uint32_t j = 0; j < d; ++j) u.indices.push_back(j);
        us.push_back(std::move(u));
      }
      std::vector<RobustInput> in;
      for (uint64_t c = 0; c < 3; ++c) in.push_back({c + 1, &us[c], 1.0});
      std::vector<float> out(d);
      std::vector<RobustVerdict> verdicts;
      REQUIRE(agg.Aggregate(in, nullptr, out, verdicts).ok());
      return out;
    };
    const std::vector<float> a = noise_of(1), again = noise_of(1), b = noise_of(2);
    CHECK(a == again);
    CHECK(a != b);
  }

  TEST_CASE("server.robust keys are read by the shared settings reader and checked") {
    auto read = [](const std::string& text) -> Result<RunSettings> {
      FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseToml(text, "scenario.toml"));
      RunSettings s;
      ConfigReader r(t);
      FRUGAL_RETURN_IF_ERROR(ReadRunSettings(r, s));
      r.CheckUnknown();
      if (r.error()) return *r.error();
      return s;
    };
    auto ok = read("[server]\nrobust = \"multi_krum\"\nkrum_byzantine = 2\nkrum_select = 5\n");
    REQUIRE_MESSAGE(ok.ok(), ok.status().ToString());
    CHECK(ok->engine.robust.rule == RobustRule::kMultiKrum);
    CHECK(ok->engine.robust.krum_byzantine == 2);
    CHECK(ok->engine.robust.krum_select == 5);
    auto trimmed = read("[server]\nrobust = \"trimmed_mean\"\ntrim_fraction = 0.1\n");
    REQUIRE(trimmed.ok());
    CHECK(trimmed->engine.robust.trim_fraction == 0.1);
    auto unknown = read("[server]\nrobust = \"krum\"\n");
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.error().message().find("krum") != std::string::npos);
    auto foolsgold = read("[server]\nrobust = \"foolsgold\"\nfoolsgold_tail = 2010\n");
    REQUIRE(foolsgold.ok());
    CHECK(foolsgold->engine.robust.rule == RobustRule::kFoolsGold);
    CHECK(foolsgold->engine.robust.foolsgold_tail == 2010);
    auto bulyan = read("[server]\nrobust = \"bulyan\"\nkrum_byzantine = 1\n");
    REQUIRE(bulyan.ok());
    CHECK(bulyan->engine.robust.rule == RobustRule::kBulyan);
    auto trim = read("[server]\nrobust = \"trimmed_mean\"\ntrim_fraction = 0.5\n");
    REQUIRE_FALSE(trim.ok());
    CHECK(trim.error().message().find("server.trim_fraction") != std::string::npos);
    auto bound = read("[server]\nrobust = \"norm_bound\"\nclip_bound = -1\n");
    REQUIRE_FALSE(bound.ok());
    CHECK(bound.error().message().find("server.clip_bound") != std::string::npos);
    auto rlr = read("[server]\nrobust = \"norm_bound\"\nrlr = true\nrlr_threshold = 3\nrlr_zero = true\n");
    REQUIRE_MESSAGE(rlr.ok(), rlr.status().ToString());
    CHECK(rlr->engine.robust.rule == RobustRule::kNormBound);
    CHECK(rlr->engine.robust.rlr);
    CHECK(rlr->engine.robust.rlr_threshold == 3);
    CHECK(rlr->engine.robust.rlr_zero);
    auto no_theta = read("[server]\nrlr = true\nrlr_threshold = 0\n");
    REQUIRE_FALSE(no_theta.ok());
    CHECK(no_theta.error().message().find("server.rlr_threshold") != std::string::npos);
    auto no_trusted = read("[server]\nrobust = \"fltrust\"\ntrusted_examples = 0\n");
    REQUIRE_FALSE(no_trusted.ok());
    CHECK(no_trusted.error().message().find("server.trusted_examples") != std::string::npos);
  }
}

}  // namespace
}  // namespace frugal
