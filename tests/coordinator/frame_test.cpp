// Framing of the coordinator/client stream: round trips over every chunking,
// the size ceiling enforced before allocation, and malformed frames refused.
#include "frugal/proto/frame.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"
#include "frugal/privacy/dp.h"
#include "frugal/proto/convert.h"

namespace frugal {
namespace {

v1::Envelope UpdateEnvelope(uint32_t round, size_t payload_bytes) {
  v1::Envelope env;
  auto* u = env.mutable_update();
  u->set_round(round);
  u->set_base_version(round);
  u->set_update(std::string(payload_bytes, static_cast<char>(round)));
  u->set_local_loss(static_cast<float>(round));
  return env;
}

std::vector<uint8_t> Concat(const std::vector<std::vector<uint8_t>>& frames) {
  std::vector<uint8_t> out;
  for (const auto& f : frames) out.insert(out.end(), f.begin(), f.end());
  return out;
}

}  // namespace

TEST_SUITE("coordinator") {
  TEST_CASE("Task.secagg: the distributed-DP ring round-trips, and out-of-range DP fields are refused naming them") {
    // The plan a coordinator sends at 4 clients (the engine's PlanDistributedRing on a 32-bit ring).
    auto round = privacy::PlanSecureRound(7, 3, 4, 0.05, 0.33, 32, 785);
    REQUIRE(round.ok());
    privacy::DpConfig dp;
    dp.mode = privacy::DpMode::kDistributed;
    dp.clip = 1.0;
    dp.noise_multiplier = 1.0;
    auto ring = privacy::PlanDistributedRing(dp, RingQuantConfig{.bits = 32, .clip = 0.1f, .max_summands = 4}, 0.33,
                                             UplinkKeepCount(0.1, 7850));
    REQUIRE(ring.ok());
    const SecureTaskPlan plan{.round = *round, .position = 1, .ring = ring->ring, .support_seed = 42, .density = 0.1};
    v1::SecAggPlan wire;
    ToWire(plan, &wire);
    CHECK(wire.distributed_dp());
    auto back = FromWire(wire, 3);
    REQUIRE(back.ok());
    CHECK(back->ring.noise_mu == ring->ring.noise_mu);
    CHECK(back->ring.l2_clip == 1.0);
    CHECK(back->ring.noise_margin == ring->ring.noise_margin);
    // Without DP the fields stay zero on the wire and off.
    SecureTaskPlan plain = plan;
    plain.ring = RingQuantConfig{.bits = 32, .clip = 0.1f, .max_summands = 4};
    v1::SecAggPlan plain_wire;
    ToWire(plain, &plain_wire);
    CHECK_FALSE(plain_wire.distributed_dp());
    auto plain_back = FromWire(plain_wire, 3);
    REQUIRE(plain_back.ok());
    CHECK(plain_back->ring.noise_mu == 0);

    auto refused = [&](auto mutate, const std::string& named) {
      v1::SecAggPlan w = wire;
      mutate(w);
      auto r = FromWire(w, 3);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code() == ErrorCode::kInvalidArgument);
      INFO(r.error().message());
      CHECK(r.error().message().find(named) != std::string::npos);
    };
    refused([](v1::SecAggPlan& w) { w.set_noise_mu(0); }, "noise_mu");
    refused([](v1::SecAggPlan& w) { w.set_noise_mu(-3); }, "noise_mu");
    refused([](v1::SecAggPlan& w) { w.set_noise_mu(std::nan("")); }, "noise_mu");
    refused([](v1::SecAggPlan& w) { w.set_noise_mu(1e30); }, "noise_mu");
    refused([](v1::SecAggPlan& w) { w.set_l2_clip(0); }, "l2_clip");
    refused([](v1::SecAggPlan& w) { w.set_l2_clip(std::numeric_limits<double>::infinity()); }, "l2_clip");
    refused([](v1::SecAggPlan& w) { w.set_noise_margin(0); }, "noise_margin");
    refused([](v1::SecAggPlan& w) { w.set_noise_margin(int64_t{1} << 31); }, "noise_margin");
    // A ring too small for the noise: the margin under 12 sd of one client's noise.
    refused([](v1::SecAggPlan& w) { w.set_noise_margin(100); }, "too small for the noise");
    // A margin that leaves the values no level per client.
    refused([](v1::SecAggPlan& w) { w.set_noise_margin((int64_t{1} << 31) - 4); }, "levels");  // 3 levels left for 4 clients: none each
    refused([](v1::SecAggPlan& w) { w.set_distributed_dp(false); }, "without distributed_dp");
  }

  TEST_CASE("Task.secagg: a derived guide's parameters round-trip, and refuse a guide beside them or out of range") {
    auto round = privacy::PlanSecureRound(7, 3, 4, 0.05, 0.33, 32, 785);
    REQUIRE(round.ok());
    SecureTaskPlan plan{.round = *round, .position = 1, .ring = RingQuantConfig{.bits = 32, .clip = 0.1f, .max_summands = 4},
                        .support_seed = 42, .density = 0.1};
    plan.guide_steps = 20;
    plan.guide_block = 16;
    plan.guided = 0.05;
    plan.guide_decay = 0.9;
    v1::SecAggPlan wire;
    ToWire(plan, &wire);
    auto back = FromWire(wire, 3);
    REQUIRE(back.ok());
    CHECK(back->guide_steps == 20);
    CHECK(back->guide_block == 16);
    CHECK(back->guided == 0.05);
    CHECK(back->guide_decay == 0.9);
    CHECK(back->support_guide.empty());
    auto refused = [&](auto mutate, const std::string& named) {
      v1::SecAggPlan w = wire;
      mutate(w);
      auto r = FromWire(w, 3);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code() == ErrorCode::kInvalidArgument);
      INFO(r.error().message());
      CHECK(r.error().message().find(named) != std::string::npos);
    };
    refused([](v1::SecAggPlan& w) { w.set_support_guide("abc"); }, "beside a support_guide");
    refused([](v1::SecAggPlan& w) { w.set_guide_block(0); }, "guide_block");
    refused([](v1::SecAggPlan& w) { w.set_guide_block(70000); }, "guide_block");
    refused([](v1::SecAggPlan& w) { w.set_guided(0); }, "guided");
    refused([](v1::SecAggPlan& w) { w.set_guided(std::nan("")); }, "guided");
    refused([](v1::SecAggPlan& w) { w.set_guide_decay(1.5); }, "guide_decay");
    refused([](v1::SecAggPlan& w) { w.set_guide_steps(0); }, "without guide_steps");
  }

  TEST_CASE("envelopes survive framing under every chunk size") {
    std::vector<std::vector<uint8_t>> frames;
    for (uint32_t r = 1; r <= 5; ++r) {
      auto f = EncodeEnvelope(UpdateEnvelope(r, 37 * r));
      REQUIRE(f.ok());
      frames.push_back(*f);
    }
    v1::Envelope hb;
    hb.mutable_heartbeat()->set_sequence(9);
    frames.push_back(*EncodeEnvelope(hb));
    const std::vector<uint8_t> stream = Concat(frames);
    for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, size_t{64}, stream.size()}) {
      EnvelopeDecoder dec;
      std::vector<v1::Envelope> got;
      for (size_t i = 0; i < stream.size(); i += chunk) {
        const size_t n = std::min(chunk, stream.size() - i);
        REQUIRE(dec.Feed(std::span(stream).subspan(i, n)).ok());
        for (;;) {
          auto e = dec.Next();
          REQUIRE(e.ok());
          if (!e->has_value()) break;
          got.push_back(std::move(**e));
        }
      }
      CHECK(dec.Finish().ok());
      REQUIRE(got.size() == 6);
      for (uint32_t r = 1; r <= 5; ++r) {
        CHECK(got[r - 1].update().round() == r);
        CHECK(got[r - 1].update().update().size() == 37 * r);
        CHECK(got[r - 1].protocol_version() == kProtocolVersion);
      }
      CHECK(got[5].heartbeat().sequence() == 9);
    }
  }

  TEST_CASE("an oversize length prefix fails before its body arrives") {
    FrameDecoder dec(1024);
    const uint8_t prefix[4] = {0x7f, 0xff, 0xff, 0xff};
    REQUIRE(dec.Feed(std::span(prefix, 3)).ok());
    const Status st = dec.Feed(std::span(prefix + 3, 1));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code() == ErrorCode::kResourceExhausted);
    CHECK(st.error().message().find("1024") != std::string::npos);
    CHECK(dec.buffered() == 4);  // nothing allocated for the declared body
    // The decoder stays failed.
    CHECK_FALSE(dec.Next().ok());
    CHECK_FALSE(dec.Feed(std::span(prefix, 1)).ok());
  }

  TEST_CASE("a frame exactly at the ceiling is accepted and one byte more is not") {
    std::vector<uint8_t> body(100, 7), out;
    REQUIRE(AppendFrame(body, 100, &out).ok());
    FrameDecoder dec(100);
    REQUIRE(dec.Feed(out).ok());
    auto f = dec.Next();
    REQUIRE(f.ok());
    REQUIRE(f->has_value());
    CHECK((*f)->size() == 100);
    body.push_back(1);
    CHECK(AppendFrame(body, 100, &out).error().code() == ErrorCode::kResourceExhausted);
  }

  TEST_CASE("a truncated frame is reported at end of stream") {
    auto f = EncodeEnvelope(UpdateEnvelope(3, 50));
    REQUIRE(f.ok());
    FrameDecoder dec;
    REQUIRE(dec.Feed(std::span(*f).first(f->size() - 1)).ok());
    auto next = dec.Next();
    REQUIRE(next.ok());
    CHECK_FALSE(next->has_value());
    const Status st = dec.Finish();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code() == ErrorCode::kDataLoss);
  }

  TEST_CASE("random bytes never yield an envelope silently and never crash") {
    Rng rng(42);
    int rejected = 0;
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<uint8_t> junk(1 + rng.UniformInt(300));
      for (auto& b : junk) b = static_cast<uint8_t>(rng.NextU64());
      EnvelopeDecoder dec(4096);
      Status st = dec.Feed(junk);
      bool failed = !st.ok();
      while (!failed) {
        auto e = dec.Next();
        if (!e.ok()) {
          failed = true;
          break;
        }
        if (!e->has_value()) break;
        CHECK((*e)->protocol_version() == kProtocolVersion);
        CHECK((*e)->body_case() != v1::Envelope::BODY_NOT_SET);
      }
      if (failed || !dec.Finish().ok()) ++rejected;
    }
    CHECK(rejected > 190);
  }

  TEST_CASE("an envelope of another protocol version or with no body is refused") {
    v1::Envelope env;
    env.set_protocol_version(kProtocolVersion + 1);
    env.mutable_bye()->set_reason("x");
    std::string bytes = env.SerializeAsString();
    std::optional<uint32_t> foreign;
    auto r = ParseEnvelope(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), &foreign);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message().find("protocol version " + std::to_string(kProtocolVersion + 1)) != std::string::npos);
    // The caller learns the version, to answer PROTOCOL_VERSION rather than "malformed".
    CHECK(foreign == std::optional<uint32_t>(kProtocolVersion + 1));

    v1::Envelope empty;
    empty.set_protocol_version(kProtocolVersion);
    bytes = empty.SerializeAsString();
    foreign.reset();
    r = ParseEnvelope(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), &foreign);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message().find("no message") != std::string::npos);
    CHECK_FALSE(foreign.has_value());
  }

  TEST_CASE("a frame that is not protobuf fails the envelope decoder") {
    std::vector<uint8_t> junk = {0xff, 0xff, 0xff, 0xff, 0xff}, out;
    REQUIRE(AppendFrame(junk, 1024, &out).ok());
    EnvelopeDecoder dec(1024);
    REQUIRE(dec.Feed(out).ok());
    auto e = dec.Next();
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().code() == ErrorCode::kInvalidArgument);
    // It stays failed, at end of stream too (found by fuzz_envelope_decode).
    CHECK_FALSE(dec.Feed(out).ok());
    CHECK_FALSE(dec.Finish().ok());
  }
}

}  // namespace frugal
