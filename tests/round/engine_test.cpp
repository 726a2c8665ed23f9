#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <vector>

#include "frugal/aggregate/fedavg.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"
#include "frugal/energy/ledger.h"
#include "frugal/energy/profiles.h"
#include "frugal/round/engine.h"
#include "frugal/round/model_payload.h"
#include "frugal/round/selection.h"
#include "round_test_util.h"

namespace frugal {
namespace {

using round_test::DenseUpdate;
using round_test::RandomVector;

TEST_SUITE("round") {
  TEST_CASE("selection is reproducible, distinct, sorted and covers clients uniformly") {
    std::vector<uint32_t> avail(1000);
    for (uint32_t i = 0; i < avail.size(); ++i) avail[i] = 3 * i;  // ids need not be dense
    auto a = SelectClients(avail, 100, 42), b = SelectClients(avail, 100, 42), c = SelectClients(avail, 100, 43);
    CHECK(a == b);
    CHECK(a != c);
    CHECK(std::set<uint32_t>(a.begin(), a.end()).size() == 100);
    CHECK(std::is_sorted(a.begin(), a.end()));
    for (uint32_t id : a) CHECK(id % 3 == 0);
    CHECK(SelectClients(avail, 5000, 1).size() == 1000);
    // Each id is picked with probability 0.1: over 400 seeds, counts stay near 40.
    std::vector<int> hits(1000, 0);
    for (uint64_t s = 0; s < 400; ++s) {
      for (uint32_t id : SelectClients(avail, 100, s)) hits[id / 3]++;
    }
    int lo = 1000, hi = 0;
    for (int h : hits) lo = std::min(lo, h), hi = std::max(hi, h);
    CHECK(lo > 15);
    CHECK(hi < 70);
  }

  TEST_CASE("weighted selection: deterministic, distinct, never picks weight 0, frequencies follow the weights") {
    std::vector<uint32_t> avail(200);
    std::vector<double> w(200);
    for (uint32_t i = 0; i < avail.size(); ++i) {
      avail[i] = 5 * i;
      w[i] = i % 4 == 0 ? 0.0 : 1.0 + (i % 4);  // weights 0, 2, 3, 4
    }
    auto a = SelectClientsWeighted(avail, w, 30, 7), b = SelectClientsWeighted(avail, w, 30, 7);
    CHECK(a == b);
    CHECK(a != SelectClientsWeighted(avail, w, 30, 8));
    CHECK(a.size() == 30);
    CHECK(std::is_sorted(a.begin(), a.end()));
    CHECK(std::set<uint32_t>(a.begin(), a.end()).size() == 30);
    for (uint32_t id : a) CHECK((id / 5) % 4 != 0);
    // Only 150 clients have a positive weight: asking for more returns those 150.
    CHECK(SelectClientsWeighted(avail, w, 1000, 1).size() == 150);
    w[3] = std::numeric_limits<double>::quiet_NaN();
    for (uint32_t id : SelectClientsWeighted(avail, w, 1000, 1)) CHECK(id != 15);
    // One draw picks weight class 2:3:4 with probability 2/9 : 3/9 : 4/9 over
    // equal-sized classes; 9,000 draws keep each share within a few points.
    w[3] = 4.0;
    std::map<int, int> by_weight;
    for (uint64_t s = 0; s < 9000; ++s) by_weight[static_cast<int>(w[SelectClientsWeighted(avail, w, 1, s)[0] / 5])]++;
    CHECK(by_weight[2] == doctest::Approx(2000).epsilon(0.08));
    CHECK(by_weight[3] == doctest::Approx(3000).epsilon(0.08));
    CHECK(by_weight[4] == doctest::Approx(4000).epsilon(0.08));
  }

  TEST_CASE("a participation's expected joules equal the ledger's row for that schedule; energy weights favour Wi-Fi") {
    auto profiles = EnergyProfiles::LoadDefault();
    REQUIRE(profiles.ok());
    const DeviceProfile& phone = **profiles->Device("phone-mid");
    const RadioProfile& wifi = **profiles->Radio("wifi");
    const RadioProfile& lte = **profiles->Radio("lte");
    const RegionProfile& region = **profiles->Region("world");
    const ParticipationEstimate e{1.4e9, 23000, 2400};
    for (const RadioProfile* radio : {&wifi, &lte}) {
      ClientRoundUsage usage;
      usage.flops = e.flops;
      const double t_up = TransferSeconds(*radio, e.bytes_down, Direction::kDown) + ComputeSeconds(phone, e.flops);
      const Transfer schedule[] = {{0.0, e.bytes_down, Direction::kDown}, {t_up, e.bytes_up, Direction::kUp}};
      usage.transfers = schedule;
      const LedgerRow row = MakeLedgerRow("t", phone, *radio, region, usage);
      CHECK(ExpectedParticipationJoules(phone, *radio, e) == doctest::Approx(row.compute_j + row.radio_j).epsilon(1e-12));
    }
    const double w_wifi = SelectionWeight(SelectionPolicy::kEnergy, phone, wifi, region, 12, e);
    const double w_lte = SelectionWeight(SelectionPolicy::kEnergy, phone, lte, region, 12, e);
    CHECK(w_wifi == doctest::Approx(1.0 / ExpectedParticipationJoules(phone, wifi, e)));
    CHECK(w_wifi > 5 * w_lte);  // the LTE tail alone costs more than a Wi-Fi participation
    CHECK(SelectionWeight(SelectionPolicy::kUniform, phone, lte, region, 12, e) == 1.0);
    const double g = CarbonGrams(ExpectedParticipationJoules(phone, lte, e), region, 12);
    CHECK(SelectionWeight(SelectionPolicy::kCarbon, phone, lte, region, 12, e) == doctest::Approx(1.0 / g));
    CHECK(ParseSelectionPolicy("energy").ok());
    CHECK(!ParseSelectionPolicy("greedy").ok());
  }

  TEST_CASE("FedAvg accumulator equals a plain weighted-mean loop") {
    const size_t d = 257;
    FedAvgAccumulator acc(d);
    std::vector<double> ref(d, 0.0);
    double wsum = 0;
    for (int c = 0; c < 7; ++c) {
      auto u = RandomVector(d, 100 + c);
      const double w = 1 + c;
      if (c % 2 == 0) {
        REQUIRE(acc.AddDense(u, w).ok());
        for (size_t j = 0; j < d; ++j) ref[j] += w * u[j];
      } else {
        std::vector<uint32_t> idx;
        std::vector<float> val;
        for (uint32_t j = c; j < d; j += 5) idx.push_back(j), val.push_back(u[j]);
        REQUIRE(acc.AddSparse(idx, val, w).ok());
        for (size_t k = 0; k < idx.size(); ++k) ref[idx[k]] += w * val[k];
      }
      wsum += w;
    }
    std::vector<float> mean(d);
    acc.Mean(mean);
    for (size_t j = 0; j < d; ++j) CHECK(mean[j] == doctest::Approx(ref[j] / wsum).epsilon(1e-6));
    const std::vector<uint32_t> bad_idx{3, static_cast<uint32_t>(d)};
    const std::vector<float> bad_val{1, 1};
    Status s = acc.AddSparse(bad_idx, bad_val, 1.0);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message().find("index 257") != std::string::npos);
    CHECK_FALSE(acc.AddDense(RandomVector(d, 1), std::nan("")).ok());
  }

  TEST_CASE("support averaging divides each coordinate by the weights of the updates carrying it") {
    const size_t d = 50;
    FedAvgAccumulator all(d), support(d, Averaging::kSupport);
    std::vector<double> sum(d, 0.0), carried(d, 0.0);
    double wsum = 0;
    // Three sparse updates with partly overlapping supports; coordinates 45..49 carried by none.
    for (uint32_t c = 0; c < 3; ++c) {
      const double w = 1.0 + 2.0 * c;
      std::vector<uint32_t> idx;
      std::vector<float> val;
      for (uint32_t j = 10 * c; j < 10 * c + 15; ++j) idx.push_back(j), val.push_back(0.25f * static_cast<float>(j) - 3.0f);
      REQUIRE(all.AddSparse(idx, val, w).ok());
      REQUIRE(support.AddSparse(idx, val, w).ok());
      for (size_t k = 0; k < idx.size(); ++k) sum[idx[k]] += w * val[k], carried[idx[k]] += w;
      wsum += w;
    }
    std::vector<float> m_all(d), m_support(d);
    all.Mean(m_all);
    support.Mean(m_support);
    for (size_t j = 0; j < d; ++j) {
      CHECK(m_all[j] == doctest::Approx(sum[j] / wsum));
      CHECK(m_support[j] == doctest::Approx(carried[j] > 0 ? sum[j] / carried[j] : 0.0));
    }
    CHECK(m_support[3] == doctest::Approx(0.25 * 3 - 3));  // carried by one update: its own value
    CHECK(m_all[3] == doctest::Approx((0.25 * 3 - 3) / 9));
    CHECK(m_support[47] == 0.0f);
    // A dense update carries every coordinate: both averagings agree.
    support.Reset();
    all.Reset();
    auto u = RandomVector(d, 5), v = RandomVector(d, 6);
    for (FedAvgAccumulator* acc : {&all, &support}) {
      REQUIRE(acc->AddDense(u, 1.0).ok());
      REQUIRE(acc->AddDense(v, 3.0).ok());
    }
    all.Mean(m_all);
    support.Mean(m_support);
    for (size_t j = 0; j < d; ++j) CHECK(m_support[j] == doctest::Approx(m_all[j]));
    CHECK(ParseAveraging("support").value() == Averaging::kSupport);
    auto bad = ParseAveraging("median");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message().find("'median'") != std::string::npos);
  }

  TEST_CASE("the released model is a moving average of the versions; clients still get the model") {
    const size_t d = 32;
    auto init = RandomVector(d, 2);
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    cfg.release_ema = 0.75;
    RoundEngine engine(init, cfg);
    EngineConfig plain_cfg = cfg;
    plain_cfg.release_ema = 0;
    RoundEngine plain(init, plain_cfg);
    std::vector<double> ref(init.begin(), init.end());
    CHECK(std::memcmp(engine.release_model().data(), init.data(), 4 * d) == 0);
    for (uint32_t r = 1; r <= 4; ++r) {
      for (RoundEngine* e : {&engine, &plain}) {
        REQUIRE(e->OpenRound(r, std::vector<uint64_t>{1}).ok());
        REQUIRE(e->Ingest(r, 1, e->version(), DenseUpdate(RandomVector(d, 40 + r, 0.5f)), 1.0).ok());
        REQUIRE(e->CloseRound(1).ok());
      }
      for (size_t j = 0; j < d; ++j) ref[j] = 0.75 * ref[j] + 0.25 * engine.global_model()[j];
    }
    for (size_t j = 0; j < d; ++j) CHECK(engine.release_model()[j] == doctest::Approx(ref[j]).epsilon(1e-6));
    // Training is unaffected: the model itself is the plain engine's, and so is what clients download.
    CHECK(std::memcmp(engine.global_model().data(), plain.global_model().data(), 4 * d) == 0);
    CHECK(std::memcmp(engine.release_model().data(), engine.global_model().data(), 4 * d) != 0);
    auto p = engine.ModelPayloadFor(0);
    REQUIRE(p.ok());
    std::vector<float> copy;
    REQUIRE(ApplyModelPayload(**p, 0, copy, d).ok());
    CHECK(std::memcmp(copy.data(), engine.global_model().data(), 4 * d) == 0);
    // Without an average, the released model is the model.
    CHECK(plain.release_model().data() == plain.global_model().data());
  }

  TEST_CASE("dense pipeline: applying the mean update of two clients moves the model by the weighted mean") {
    const size_t d = 64;
    auto init = RandomVector(d, 1);
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    RoundEngine engine(init, cfg);
    const std::vector<uint64_t> sel{3, 9};
    REQUIRE(engine.OpenRound(1, sel).ok());
    auto u3 = RandomVector(d, 3, 0.1f), u9 = RandomVector(d, 9, 0.1f);
    REQUIRE(engine.Ingest(1, 3, 1, DenseUpdate(u3), 1.0).ok());
    REQUIRE(engine.Ingest(1, 9, 1, DenseUpdate(u9), 3.0).ok());
    auto out = engine.CloseRound(1);
    REQUIRE(out.ok());
    CHECK(out->applied);
    CHECK(out->new_version == 2);
    for (size_t j = 0; j < d; ++j) {
      CHECK(engine.global_model()[j] == doctest::Approx(init[j] + (u3[j] + 3 * u9[j]) / 4).epsilon(1e-5));
    }
    // The baseline keeps no compressed steps.
    CHECK(engine.StepPayload(2).empty());
    CHECK(engine.StepPayload(1).empty());
    // A client with nothing gets the full fp32 model, bit-exact.
    auto p = engine.ModelPayloadFor(0);
    REQUIRE(p.ok());
    std::vector<float> copy;
    auto v = ApplyModelPayload(**p, 0, copy, d);
    REQUIRE(v.ok());
    CHECK(*v == 2);
    CHECK(std::memcmp(copy.data(), engine.global_model().data(), d * 4) == 0);
  }

  TEST_CASE("bad updates are rejected with a reason and the model is untouched") {
    const size_t d = 32;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    RoundEngine engine(RandomVector(d, 5), cfg);
    const std::vector<float> before(engine.global_model().begin(), engine.global_model().end());
    const std::vector<uint64_t> sel{1, 2};
    auto good = DenseUpdate(RandomVector(d, 6));
    RejectReason why{};
    CHECK_FALSE(engine.Ingest(1, 1, 1, good, 1.0, &why).ok());
    CHECK(why == RejectReason::kRoundClosed);
    REQUIRE(engine.OpenRound(4, sel).ok());
    CHECK_FALSE(engine.Ingest(3, 1, 1, good, 1.0, &why).ok());
    CHECK(why == RejectReason::kStaleRound);
    CHECK_FALSE(engine.Ingest(4, 7, 1, good, 1.0, &why).ok());
    CHECK(why == RejectReason::kNotSelected);
    CHECK_FALSE(engine.Ingest(4, 1, 0, good, 1.0, &why).ok());
    CHECK(why == RejectReason::kStaleBase);
    Status wrong_dim = engine.Ingest(4, 1, 1, DenseUpdate(RandomVector(d + 1, 6)), 1.0, &why);
    REQUIRE_FALSE(wrong_dim.ok());
    CHECK(why == RejectReason::kWrongDimension);
    CHECK(wrong_dim.error().message().find("client 1") != std::string::npos);
    // A NaN inside an otherwise well-formed, correctly checksummed payload.
    auto nan_update = good;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(nan_update.data() + kFrameHeaderSize + 4 * 5, &nan, 4);
    REQUIRE(SealFrame(nan_update).ok());
    Status s = engine.Ingest(4, 1, 1, nan_update, 1.0, &why);
    REQUIRE_FALSE(s.ok());
    CHECK(why == RejectReason::kNonFinite);
    CHECK(s.error().message().find("NaN") != std::string::npos);
    auto garbage = good;
    garbage[30] ^= 0xff;
    CHECK_FALSE(engine.Ingest(4, 1, 1, garbage, 1.0, &why).ok());
    CHECK(why == RejectReason::kMalformed);
    CHECK_FALSE(engine.Ingest(4, 1, 1, good, -1.0, &why).ok());
    CHECK(why == RejectReason::kBadWeight);
    // Nothing accepted: the round fails its quorum and the model stays as it was.
    auto out = engine.CloseRound(1);
    REQUIRE(out.ok());
    CHECK_FALSE(out->applied);
    CHECK(engine.version() == 1);
    CHECK(std::vector<float>(engine.global_model().begin(), engine.global_model().end()) == before);
    // A duplicate is refused after a good one is accepted.
    REQUIRE(engine.OpenRound(5, sel).ok());
    REQUIRE(engine.Ingest(5, 2, 1, good, 1.0).ok());
    CHECK_FALSE(engine.Ingest(5, 2, 1, good, 1.0, &why).ok());
    CHECK(why == RejectReason::kDuplicate);
  }

  TEST_CASE("frugal pipeline: chains keep a client's copy bit-identical to the server's over 30 versions") {
    const size_t d = 5000;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kFrugal;
    cfg.full_model.bits = 0;  // a lossless first download so the client starts exact
    cfg.broadcast.density = 0.02;
    RoundEngine engine(RandomVector(d, 11), cfg);
    std::vector<float> client;
    uint32_t held = 0;
    UplinkConfig up;
    up.density = 0.05;
    for (uint32_t round = 1; round <= 30; ++round) {
      const std::vector<uint64_t> sel{1, 2, 3};
      REQUIRE(engine.OpenRound(round, sel).ok());
      if (round % 3 == 1) {  // the client syncs only every third round: chains of 1 to 3 steps
        auto p = engine.ModelPayloadFor(held);
        REQUIRE(p.ok());
        auto v = ApplyModelPayload(**p, held, client, d);
        REQUIRE(v.ok());
        held = *v;
        REQUIRE(held == engine.version());
        CHECK(std::memcmp(client.data(), engine.global_model().data(), d * 4) == 0);
      }
      for (uint64_t c : sel) {
        std::vector<float> resid;
        auto u = EncodeUplink(RandomVector(d, round * 10 + c, 0.01f), up, resid);
        REQUIRE(u.ok());
        REQUIRE(engine.Ingest(round, c, engine.version(), *u, 1.0).ok());
      }
      auto out = engine.CloseRound(2);
      REQUIRE(out.ok());
      CHECK(out->broadcast_bytes > 0);
      CHECK(out->broadcast_bytes < d / 4);  // far below the 4*d of fp32
    }
    CHECK_FALSE(engine.StepPayload(engine.version()).empty());
    CHECK(engine.StepPayload(engine.version() + 1).empty());
    // A chain from an old version is much smaller than a full model.
    auto chain = engine.ModelPayloadFor(engine.version() - 2);
    auto full = engine.ModelPayloadFor(0);
    REQUIRE(chain.ok());
    REQUIRE(full.ok());
    CHECK((*chain)->size() * 10 < (*full)->size());
    // A chain applied to the wrong version is refused and leaves the copy as it was.
    std::vector<float> copy = client;
    CHECK_FALSE(ApplyModelPayload(**chain, held == 1 ? 2 : 1, copy, d).ok());
    CHECK(copy == client);
  }

  TEST_CASE("downlink.merge_chains: missed steps come as one merged piece, smaller than the chain, and leave the client bit-identical to the chain applied step by step") {
    const size_t d = 20000;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kFrugal;
    cfg.full_model.bits = 0;
    cfg.broadcast.density = 0.005;
    EngineConfig merging = cfg;
    merging.merge_chains = true;
    const std::vector<float> init = RandomVector(d, 21);
    RoundEngine plain(init, cfg), merged(init, merging);
    UplinkConfig up;
    up.density = 0.05;
    const std::vector<float> drift = RandomVector(d, 22, 0.01f);
    std::vector<float> held1;  // a client that holds version 1 and misses every step
    REQUIRE(ApplyModelPayload(**merged.ModelPayloadFor(0), 0, held1, d).ok());
    size_t merged_sent = 0;
    for (uint32_t round = 1; round <= 24; ++round) {
      const std::vector<uint64_t> sel{1, 2, 3};
      REQUIRE(plain.OpenRound(round, sel).ok());
      REQUIRE(merged.OpenRound(round, sel).ok());
      for (uint32_t held = 1; held < merged.version(); held += 3) {
        auto mp = merged.ModelPayloadFor(held);
        auto cp = plain.ModelPayloadFor(held);
        REQUIRE(mp.ok());
        REQUIRE(cp.ok());
        std::vector<std::span<const uint8_t>> pieces;
        auto mh = ParseModelPayload(**mp, d, &pieces);
        REQUIRE(mh.ok());
        auto ch = ParseModelPayload(**cp, d, &pieces);
        REQUIRE(ch.ok());
        CHECK(ch->kind == ModelPayloadKind::kChain);
        if (mh->kind == ModelPayloadKind::kMerged) {
          ++merged_sent;
          CHECK((*mp)->size() < (*cp)->size());
        } else {
          CHECK(**mp == **cp);  // not smaller: the chain as it is
        }
        // The plain reference: version held's model plus each step, decoded and added in order.
        if (held == 1) {
          std::vector<float> ref = held1;
          for (uint32_t v = 2; v <= merged.version(); ++v) {
            auto u = DecodeUplink(merged.StepPayload(v), d);
            REQUIRE(u.ok());
            for (size_t j = 0; j < u->indices.size(); ++j) ref[u->indices[j]] += u->values[j];
          }
          std::vector<float> got = held1;
          auto to = ApplyModelPayload(**mp, 1, got, d);
          REQUIRE(to.ok());
          CHECK(*to == merged.version());
          CHECK(std::memcmp(got.data(), ref.data(), d * 4) == 0);
          CHECK(std::memcmp(got.data(), merged.global_model().data(), d * 4) == 0);
          // Applied to another version it is refused and leaves the copy as it was.
          if (merged.version() > 2) {
            std::vector<float> copy = held1;
            CHECK_FALSE(ApplyModelPayload(**mp, 2, copy, d).ok());
            CHECK(copy == held1);
          }
        }
      }
      for (uint64_t c : sel) {
        std::vector<float> u = RandomVector(d, round * 10 + c, 0.004f);
        for (size_t i = 0; i < d; ++i) u[i] += drift[i];
        std::vector<float> resid;
        auto e = EncodeUplink(u, up, resid);
        REQUIRE(e.ok());
        REQUIRE(plain.Ingest(round, c, plain.version(), *e, 1.0).ok());
        REQUIRE(merged.Ingest(round, c, merged.version(), *e, 1.0).ok());
      }
      REQUIRE(plain.CloseRound(2).ok());
      REQUIRE(merged.CloseRound(2).ok());
      // Merging is a choice of bytes only: the server's model is the same.
      REQUIRE(std::memcmp(plain.global_model().data(), merged.global_model().data(), d * 4) == 0);
    }
    CHECK(merged_sent > 10);
  }

  TEST_CASE("downlink.broadcast_block: steps of whole blocks, the server's residual keeps what was not sent, and chains and merged pieces stay bit-exact") {
    const size_t d = 20002;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kFrugal;
    cfg.full_model.bits = 0;
    cfg.broadcast.density = 0.01;
    cfg.broadcast.block = 4;
    cfg.merge_chains = true;
    const std::vector<float> init = RandomVector(d, 41);
    RoundEngine engine(init, cfg);
    UplinkConfig up;  // every coordinate of the sum non-zero, so every entry of a kept block is sent
    up.density = 1.0;
    up.values = ValueCoding::kFp32;
    std::vector<float> ref_model = init;  // the first model plus every step, decoded and added in order
    std::vector<float> client_a, client_b;  // a syncs every round, b every fifth (merged pieces)
    uint32_t held_a = 0, held_b = 0;
    size_t merged_sent = 0;
    for (uint32_t round = 1; round <= 20; ++round) {
      const std::vector<uint64_t> sel{1, 2, 3};
      REQUIRE(engine.OpenRound(round, sel).ok());
      for (auto [copy, held, every] : {std::tuple{&client_a, &held_a, 1u}, std::tuple{&client_b, &held_b, 5u}}) {
        if (round % every != 1 % every) continue;
        auto p = engine.ModelPayloadFor(*held);
        REQUIRE(p.ok());
        std::vector<std::span<const uint8_t>> pieces;
        auto h = ParseModelPayload(**p, d, &pieces);
        REQUIRE(h.ok());
        merged_sent += h->kind == ModelPayloadKind::kMerged ? 1 : 0;
        auto v = ApplyModelPayload(**p, *held, *copy, d);
        REQUIRE(v.ok());
        *held = *v;
        CHECK(std::memcmp(copy->data(), engine.global_model().data(), d * 4) == 0);
      }
      for (uint64_t c : sel) {
        std::vector<float> resid;
        auto u = EncodeUplink(RandomVector(d, round * 10 + c, 0.01f), up, resid);
        REQUIRE(u.ok());
        REQUIRE(engine.Ingest(round, c, engine.version(), *u, 1.0).ok());
      }
      REQUIRE(engine.CloseRound(2).ok());
      auto step = DecodeUplink(engine.StepPayload(engine.version()), d);
      REQUIRE(step.ok());
      // Whole blocks: a block with one entry sent has all of its entries sent.
      std::vector<int> per_block((d + 3) / 4, 0);
      for (uint32_t i : step->indices) ++per_block[i / 4];
      bool whole = true;
      for (size_t b = 0; b < per_block.size(); ++b) whole &= per_block[b] == 0 || per_block[b] == std::min<int>(4, static_cast<int>(d - 4 * b));
      CHECK(whole);
      CHECK(step->indices.size() >= 198);  // ceil(k / 4) = 50 blocks of 4 (one may be the last, of 2)
      CHECK(step->indices.size() <= 200);
      // The model moved by exactly the step (the residual test is the codec's, uplink_test.cpp).
      for (size_t j = 0; j < step->indices.size(); ++j) ref_model[step->indices[j]] += step->values[j];
      CHECK(std::memcmp(ref_model.data(), engine.global_model().data(), d * 4) == 0);
    }
    CHECK(merged_sent >= 3);
  }

  TEST_CASE("downlink.merge_version = 2: the merged piece is version 2, no larger than version 1's, and leaves the client bit-identical to the server's model") {
    const size_t d = 20000;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kFrugal;
    cfg.full_model.bits = 0;
    cfg.broadcast.density = 0.005;
    cfg.merge_chains = true;
    EngineConfig v2cfg = cfg;
    v2cfg.merge_version = 2;
    const std::vector<float> init = RandomVector(d, 31);
    RoundEngine one(init, cfg), two(init, v2cfg);
    UplinkConfig up;
    up.density = 0.05;
    const std::vector<float> drift = RandomVector(d, 32, 0.01f);
    std::vector<float> held1;
    REQUIRE(ApplyModelPayload(**two.ModelPayloadFor(0), 0, held1, d).ok());
    size_t merged_v2 = 0;
    for (uint32_t round = 1; round <= 16; ++round) {
      const std::vector<uint64_t> sel{1, 2, 3};
      REQUIRE(one.OpenRound(round, sel).ok());
      REQUIRE(two.OpenRound(round, sel).ok());
      auto p1 = one.ModelPayloadFor(1);
      auto p2 = two.ModelPayloadFor(1);
      REQUIRE(p1.ok());
      REQUIRE(p2.ok());
      std::vector<std::span<const uint8_t>> pieces;
      auto h2 = ParseModelPayload(**p2, d, &pieces);
      REQUIRE(h2.ok());
      if (h2->kind == ModelPayloadKind::kMerged) {
        ++merged_v2;
        CHECK(pieces[0][5] == 2);  // the piece's codec version
        CHECK((*p2)->size() <= (*p1)->size());
      }
      std::vector<float> got = held1;
      auto to = ApplyModelPayload(**p2, 1, got, d);
      REQUIRE(to.ok());
      CHECK(std::memcmp(got.data(), two.global_model().data(), d * 4) == 0);
      for (uint64_t c : sel) {
        std::vector<float> u = RandomVector(d, round * 10 + c, 0.004f);
        for (size_t i = 0; i < d; ++i) u[i] += drift[i];
        std::vector<float> resid;
        auto e = EncodeUplink(u, up, resid);
        REQUIRE(e.ok());
        REQUIRE(one.Ingest(round, c, one.version(), *e, 1.0).ok());
        REQUIRE(two.Ingest(round, c, two.version(), *e, 1.0).ok());
      }
      REQUIRE(one.CloseRound(2).ok());
      REQUIRE(two.CloseRound(2).ok());
      REQUIRE(std::memcmp(one.global_model().data(), two.global_model().data(), d * 4) == 0);
    }
    CHECK(merged_v2 > 10);
  }

  TEST_CASE("a restored engine continues with the same versions, chains, residual, momentum and average") {
    const size_t d = 3000;
    EngineConfig cfg;
    cfg.broadcast.density = 0.02;
    cfg.server_opt.momentum = 0.9f;
    cfg.averaging = Averaging::kSupport;
    cfg.release_ema = 0.8;
    cfg.delta_window = 4;
    RoundEngine a(RandomVector(d, 21), cfg);
    UplinkConfig up;
    up.density = 0.05;
    std::map<uint32_t, std::vector<uint8_t>> steps;
    auto run_round = [&](RoundEngine& e, uint32_t round) {
      const std::vector<uint64_t> sel{1, 2};
      REQUIRE(e.OpenRound(round, sel).ok());
      for (uint64_t c : sel) {
        auto u = EncodeUplink(RandomVector(d, round * 7 + c, 0.01f), up, {});
        REQUIRE(u.ok());
        REQUIRE(e.Ingest(round, c, e.version(), *u, 1.0).ok());
      }
      REQUIRE(e.CloseRound(1).ok());
      auto step = e.StepPayload(e.version());
      steps[e.version()].assign(step.begin(), step.end());
    };
    for (uint32_t r = 1; r <= 6; ++r) run_round(a, r);
    EngineState state = round_test::Snapshot(a);
    state.steps = steps;
    auto b = RoundEngine::Restore(state, cfg);
    REQUIRE(b.ok());
    CHECK((*b)->version() == 7);
    // The same chain from a version inside the window, and none from outside it.
    for (uint32_t held : {3u, 5u, 6u}) {
      auto pa = a.ModelPayloadFor(held), pb = (*b)->ModelPayloadFor(held);
      REQUIRE(pa.ok());
      REQUIRE(pb.ok());
      CHECK(**pa == **pb);
    }
    // Two more rounds on each: bit-identical models (residual and momentum carried over).
    for (uint32_t r = 7; r <= 8; ++r) {
      run_round(a, r);
      run_round(**b, r);
    }
    CHECK(std::memcmp(a.global_model().data(), (*b)->global_model().data(), 4 * d) == 0);
    CHECK(std::memcmp(a.release_model().data(), (*b)->release_model().data(), 4 * d) == 0);
    // Without the server state the run diverges: the restore really carries it.
    state.server_state.clear();
    auto c = RoundEngine::Restore(state, cfg);
    REQUIRE(c.ok());
    for (uint32_t r = 7; r <= 8; ++r) run_round(**c, r);
    CHECK(std::memcmp(a.global_model().data(), (*c)->global_model().data(), 4 * d) != 0);
    CHECK(std::memcmp(a.release_model().data(), (*c)->release_model().data(), 4 * d) != 0);
    state.server_state = {1, 2, 3};
    auto bad = RoundEngine::Restore(state, cfg);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message().find("server state has 3 bytes") != std::string::npos);
  }

  TEST_CASE("model payload parser rejects truncation, bad magic, bad counts and wrong dimensions") {
    std::vector<std::span<const uint8_t>> pieces;
    const std::vector<uint8_t> piece{1, 2, 3};
    std::span<const uint8_t> ps(piece);
    auto bytes = EncodeModelPayload({ModelPayloadKind::kChain, 4, 5, 10, 1}, std::span(&ps, 1));
    REQUIRE(ParseModelPayload(bytes, 10, &pieces).ok());
    CHECK(pieces.size() == 1);
    auto err = [&](std::vector<uint8_t> b, uint32_t dim) {
      auto r = ParseModelPayload(b, dim, &pieces);
      REQUIRE_FALSE(r.ok());
      return r.error().message();
    };
    CHECK(err(std::vector<uint8_t>(bytes.begin(), bytes.end() - 1), 10).find("only 2 remain") != std::string::npos);
    CHECK(err(std::vector<uint8_t>(bytes.begin(), bytes.begin() + 10), 10).find("truncated") != std::string::npos);
    CHECK(err(bytes, 11).find("dimension 10") != std::string::npos);
    auto bad = bytes;
    bad[0] = 'X';
    CHECK(err(bad, 10).find("magic") != std::string::npos);
    bad = bytes;
    bad[20] = 0xff;  // piece count
    CHECK(err(bad, 10).find("pieces") != std::string::npos);
    bad = bytes;
    bad.push_back(0);
    CHECK(err(bad, 10).find("trailing") != std::string::npos);
    // A merged payload (kind 3) holds one piece and goes from a held version to a later one.
    const std::span<const uint8_t> two[2] = {ps, ps};
    CHECK(ParseModelPayload(EncodeModelPayload({ModelPayloadKind::kMerged, 4, 7, 10, 1}, std::span(&ps, 1)), 10, &pieces).ok());
    CHECK(err(EncodeModelPayload({ModelPayloadKind::kMerged, 4, 7, 10, 2}, two), 10).find("merged model payload") !=
          std::string::npos);
    CHECK(err(EncodeModelPayload({ModelPayloadKind::kMerged, 0, 3, 10, 1}, std::span(&ps, 1)), 10).find("from version 0") !=
          std::string::npos);
    CHECK(err(EncodeModelPayload({ModelPayloadKind::kMerged, 5, 5, 10, 1}, std::span(&ps, 1)), 10).find("merged") !=
          std::string::npos);
    // Its piece is decoded as merged steps: three bytes are not one, named as such, and the copy is untouched.
    std::vector<float> copy(10, 1.0f);
    auto applied = ApplyModelPayload(EncodeModelPayload({ModelPayloadKind::kMerged, 4, 7, 10, 1}, std::span(&ps, 1)), 4,
                                     copy, 10);
    REQUIRE_FALSE(applied.ok());
    CHECK(applied.error().message().find("merged model payload") != std::string::npos);
    CHECK(copy == std::vector<float>(10, 1.0f));
  }
}

}  // namespace
}  // namespace frugal
