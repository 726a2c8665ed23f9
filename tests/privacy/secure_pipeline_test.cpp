// The secure pipeline through the round engine: clients quantize on the
// round's shared support, run the real SecAgg+ protocol in process
// (LocalSecureRound), and the engine applies the unmasked sum. Checked against
// a plain reference: the mean of the survivors' quantized values, added to the
// model (lossless fp32 broadcast, plain SGD at rate 1).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <cstring>
#include <vector>

#include "frugal/codec/ring_quant.h"
#include "frugal/codec/shared_support.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"
#include "frugal/privacy/identity.h"
#include "frugal/privacy/secure_local_round.h"
#include "frugal/core/config_reader.h"
#include "frugal/round/engine.h"
#include "frugal/round/model_payload.h"
#include "frugal/round/settings.h"
#include "frugal/round/step_history.h"

namespace frugal {
namespace {

double CpuClock() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

EngineConfig SecureEngine(uint32_t clients) {
  EngineConfig cfg;
  cfg.pipeline = Pipeline::kSecure;
  cfg.uplink_density = 0.1;
  cfg.broadcast = {.dense = false, .density = 1.0, .values = ValueCoding::kFp32};  // lossless steps
  cfg.secure.ring = {.bits = 24, .clip = 0.5f, .max_summands = clients};
  cfg.secure.support_seed = 77;
  return cfg;
}

TEST_SUITE("secure_pipeline") {

TEST_CASE("the engine's model moves by exactly the mean of the survivors' quantized updates") {
  constexpr uint32_t n = 12;
  constexpr size_t dim = 500;
  std::vector<float> init(dim, 0.25f);
  RoundEngine engine(init, SecureEngine(n));
  std::vector<uint64_t> ids(n);
  for (uint32_t u = 0; u < n; ++u) ids[u] = 100 + u;
  std::vector<std::vector<float>> residuals(n, std::vector<float>(dim, 0.0f));
  Rng rng(4);
  std::vector<float> model(init);
  for (uint32_t round = 1; round <= 3; ++round) {
    REQUIRE(engine.OpenRound(round, ids).ok());
    auto support = engine.SecureSupport(round);
    REQUIRE(support.ok());
    CHECK(support->size() == 50);
    auto plan = privacy::PlanSecureRound(1, round, n, 0.05, 0.33, 24, static_cast<uint32_t>(support->size()));
    REQUIRE(plan.ok());
    auto protocol = privacy::LocalSecureRound::Start(*plan, CpuClock);
    REQUIRE(protocol.ok());
    const RingQuantConfig& ring = engine.config().secure.ring;
    const double scale = RingScale(ring);
    std::vector<int64_t> level_sum(support->size(), 0);
    std::vector<uint32_t> delivered;
    for (uint32_t u = 0; u < n; ++u) {
      std::vector<float> delta(dim);
      for (auto& v : delta) v = static_cast<float>(rng.Normal() * 0.1);
      auto input = RingQuantize(delta, *support, ring, round * 1000 + u, residuals[u]);
      REQUIRE(input.ok());
      REQUIRE((*protocol)->MaskedInput(u, *input).ok());
      if (u == 3 || u == 8) continue;  // their masked inputs never arrive
      delivered.push_back(u);
      const uint64_t half = uint64_t{1} << (ring.bits - 1);
      for (size_t j = 0; j < input->size(); ++j) {
        const uint64_t e = (*input)[j];
        level_sum[j] += e >= half ? static_cast<int64_t>(e) - static_cast<int64_t>(2 * half) : static_cast<int64_t>(e);
      }
    }
    auto agg = (*protocol)->Finish(delivered);
    REQUIRE_MESSAGE(agg.ok(), agg.status().ToString());
    CHECK(agg->survivors == delivered);
    CHECK(agg->dropped == std::vector<uint32_t>{3, 8});
    std::vector<uint64_t> survivors;
    for (uint32_t u : agg->survivors) survivors.push_back(ids[u]);
    REQUIRE(engine.IngestSecureSum(round, survivors, agg->sum).ok());
    CHECK(!engine.IngestSecureSum(round, survivors, agg->sum).ok());  // once per round
    auto out = engine.CloseRound(1);
    REQUIRE(out.ok());
    CHECK(out->applied);
    CHECK(out->accepted == n - 2);
    // Plain reference.
    for (size_t j = 0; j < support->size(); ++j) {
      const double mean = static_cast<double>(level_sum[j]) / scale / static_cast<double>(delivered.size());
      model[(*support)[j]] += static_cast<float>(mean);
    }
    const auto got = engine.global_model();
    for (size_t i = 0; i < dim; ++i) REQUIRE(got[i] == doctest::Approx(model[i]).epsilon(1e-6));
    std::copy(got.begin(), got.end(), model.begin());  // next round starts from the engine's exact floats
  }
}

TEST_CASE("SecureProtocol::kSumOnly gives the protocol's exact sums, survivors and models, and fails where it fails") {
  // Two engines fed the same clients' updates, one through the real protocol
  // and one through the shortcut (secure.run_protocol = false): every round's
  // sum, survivors, dropped set, message size and model are bit-identical.
  constexpr uint32_t n = 10;
  constexpr size_t dim = 400;
  const std::vector<float> init(dim, 0.1f);
  RoundEngine run_engine(init, SecureEngine(n)), sum_engine(init, SecureEngine(n));
  std::vector<uint64_t> ids(n);
  for (uint32_t u = 0; u < n; ++u) ids[u] = 200 + u;
  std::vector<std::vector<float>> run_resid(n, std::vector<float>(dim, 0.0f)), sum_resid = run_resid;
  Rng rng(9);
  for (uint32_t round = 1; round <= 2; ++round) {
    REQUIRE(run_engine.OpenRound(round, ids).ok());
    REQUIRE(sum_engine.OpenRound(round, ids).ok());
    auto support = run_engine.SecureSupport(round);
    REQUIRE(support.ok());
    auto plan = privacy::PlanSecureRound(1, round, n, 0.05, 0.33, 24, static_cast<uint32_t>(support->size()));
    REQUIRE(plan.ok());
    auto run = privacy::LocalSecureRound::Start(*plan, CpuClock, privacy::SecureProtocol::kRun);
    auto sum_only = privacy::LocalSecureRound::Start(*plan, CpuClock, privacy::SecureProtocol::kSumOnly);
    REQUIRE(run.ok());
    REQUIRE(sum_only.ok());
    CHECK((*run)->runs_protocol());
    CHECK(!(*sum_only)->runs_protocol());
    const RingQuantConfig& ring = run_engine.config().secure.ring;
    std::vector<uint32_t> delivered;
    for (uint32_t u = 0; u < n; ++u) {
      std::vector<float> delta(dim);
      for (auto& v : delta) v = static_cast<float>(rng.Normal() * 0.1);
      auto a = RingQuantize(delta, *support, ring, round * 1000 + u, run_resid[u]);
      auto b = RingQuantize(delta, *support, ring, round * 1000 + u, sum_resid[u]);
      REQUIRE(a.ok());
      REQUIRE(b.ok());
      auto ma = (*run)->MaskedInput(u, *a);
      auto mb = (*sum_only)->MaskedInput(u, *b);
      REQUIRE(ma.ok());
      REQUIRE(mb.ok());
      CHECK(ma->size() == mb->size());  // the same upload on the wire
      CHECK((*sum_only)->cost(u).masked_bytes == mb->size());
      CHECK((*sum_only)->cost(u).setup_bytes_up == 0);
      if (u != 2 + round) delivered.push_back(u);  // one drop-out a round
    }
    CHECK(!(*sum_only)->MaskedInput(0, std::vector<uint64_t>(support->size() + 1, 0)).ok());
    auto x = (*run)->Finish(delivered);
    auto y = (*sum_only)->Finish(delivered);
    REQUIRE_MESSAGE(x.ok(), x.status().ToString());
    REQUIRE_MESSAGE(y.ok(), y.status().ToString());
    CHECK(x->sum == y->sum);
    CHECK(x->survivors == y->survivors);
    CHECK(x->dropped == y->dropped);
    std::vector<uint64_t> survivors;
    for (uint32_t u : x->survivors) survivors.push_back(ids[u]);
    REQUIRE(run_engine.IngestSecureSum(round, survivors, x->sum).ok());
    REQUIRE(sum_engine.IngestSecureSum(round, survivors, y->sum).ok());
    REQUIRE(run_engine.CloseRound(1).ok());
    REQUIRE(sum_engine.CloseRound(1).ok());
    const auto ga = run_engine.global_model(), gb = sum_engine.global_model();
    CHECK(std::equal(ga.begin(), ga.end(), gb.begin(), gb.end()));
    CHECK(run_resid == sum_resid);
  }
  // Too few survivors: both refuse the round the same way.
  auto plan = privacy::PlanSecureRound(1, 3, n, 0.05, 0.33, 24, 8);
  REQUIRE(plan.ok());
  auto run = privacy::LocalSecureRound::Start(*plan, CpuClock, privacy::SecureProtocol::kRun);
  auto sum_only = privacy::LocalSecureRound::Start(*plan, CpuClock, privacy::SecureProtocol::kSumOnly);
  REQUIRE(run.ok());
  REQUIRE(sum_only.ok());
  std::vector<uint32_t> few;
  for (uint32_t u = 0; u < n; ++u) {
    const std::vector<uint64_t> input(8, u);
    REQUIRE((*run)->MaskedInput(u, input).ok());
    REQUIRE((*sum_only)->MaskedInput(u, input).ok());
    if (few.size() < plan->threshold) few.push_back(u);  // t survivors, one short of t + 1
  }
  auto x = (*run)->Finish(few);
  auto y = (*sum_only)->Finish(few);
  REQUIRE(!x.ok());
  REQUIRE(!y.ok());
  CHECK(x.error().code() == ErrorCode::kFailedPrecondition);
  CHECK(y.error().code() == ErrorCode::kFailedPrecondition);
  CHECK(y.error().message().find("threshold + 1") != std::string::npos);
}

TEST_CASE("the secure engine refuses plain updates, foreign sums and a sum beyond its headroom") {
  constexpr uint32_t n = 4;
  RoundEngine engine(std::vector<float>(100, 0.0f), SecureEngine(n));
  std::vector<uint64_t> ids = {1, 2, 3, 4};
  REQUIRE(engine.OpenRound(1, ids).ok());
  RejectReason why{};
  const std::vector<uint8_t> plain(40, 0);
  CHECK(!engine.Ingest(1, 1, 1, plain, 1.0, &why).ok());
  CHECK(why == RejectReason::kMalformed);
  const std::vector<uint64_t> zeros(10, 0);
  CHECK(!engine.IngestSecureSum(2, ids, zeros).ok());                               // another round
  CHECK(!engine.IngestSecureSum(1, std::vector<uint64_t>{1, 9}, zeros).ok());       // not selected
  CHECK(!engine.IngestSecureSum(1, std::vector<uint64_t>{1, 1}, zeros).ok());       // twice
  CHECK(!engine.IngestSecureSum(1, ids, std::vector<uint64_t>(11, 0)).ok());        // wrong length
  std::vector<uint64_t> wrapped(10, 0);
  wrapped[0] = uint64_t{1} << 23;  // -2^23: beyond what 2 clients can send
  CHECK(engine.IngestSecureSum(1, std::vector<uint64_t>{1, 2}, wrapped).error().code() == ErrorCode::kDataLoss);
  auto out = engine.CloseRound(1);
  REQUIRE(out.ok());
  CHECK(!out->applied);  // nothing valid arrived: the model stays
  CHECK(engine.version() == 1);
  EngineConfig frugal_cfg;
  RoundEngine frugal(std::vector<float>(100, 0.0f), frugal_cfg);
  CHECK(!frugal.SecureSupport(1).ok());
}

TEST_CASE("with modular clipping the engine takes a sum of more clients than the ring holds, read as its centered residue") {
  // 4 clients, a 4-bit ring with headroom for 3 (2 levels each, 4 levels per
  // unit at clip 0.5): 4 clients at +2 sum to 8, which the ring holds as -8.
  constexpr size_t dim = 100;
  auto run = [&](bool modular) -> Result<std::vector<float>> {
    EngineConfig cfg = SecureEngine(3);
    cfg.secure.ring = {.bits = 4, .clip = 0.5f, .max_summands = 3, .modular = modular};
    RoundEngine engine(std::vector<float>(dim, 0.0f), cfg);
    const std::vector<uint64_t> ids = {1, 2, 3, 4};
    FRUGAL_RETURN_IF_ERROR(engine.OpenRound(1, ids));
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> support, engine.SecureSupport(1));
    std::vector<uint64_t> sum(support.size(), 0);
    sum[0] = 8;   // a true 8 wrapped to -8
    sum[1] = 7;   // the largest sum that does not wrap
    sum[2] = 15;  // -1
    FRUGAL_RETURN_IF_ERROR(engine.IngestSecureSum(1, ids, sum));
    FRUGAL_ASSIGN_OR_RETURN(RoundOutcome out, engine.CloseRound(1));
    if (!out.applied) return InternalError("round not applied");
    const auto g = engine.global_model();
    std::vector<float> moved(dim, 0.0f);
    moved[0] = g[support[0]];
    moved[1] = g[support[1]];
    moved[2] = g[support[2]];
    moved[3] = g[support[3]];
    return moved;
  };
  auto modular = run(true);
  REQUIRE_MESSAGE(modular.ok(), modular.status().ToString());
  // Plain reference: the mean of 4 clients of levels / 4 levels per unit.
  CHECK((*modular)[0] == doctest::Approx(-8.0 / 4 / 4));
  CHECK((*modular)[1] == doctest::Approx(7.0 / 4 / 4));
  CHECK((*modular)[2] == doctest::Approx(-1.0 / 4 / 4));
  CHECK((*modular)[3] == 0.0f);
  auto strict = run(false);
  REQUIRE(!strict.ok());
  CHECK(strict.error().code() == ErrorCode::kFailedPrecondition);  // 4 clients, headroom for 3: refused
}

TEST_CASE("secure.step_scale multiplies the survivors' mean before the server optimizer") {
  // The ring sums are made up (a fixed pattern, not a protocol run: the
  // protocol is tested above); what is checked is the step the engine takes.
  constexpr uint32_t n = 4;
  constexpr size_t dim = 200;
  auto run = [&](double scale, float rate, float momentum) {
    EngineConfig cfg = SecureEngine(n);
    cfg.secure.step_scale = scale;
    cfg.server_opt.learning_rate = rate;
    cfg.server_opt.momentum = momentum;
    RoundEngine engine(std::vector<float>(dim, 0.0f), cfg);
    const std::vector<uint64_t> ids = {1, 2, 3, 4};
    for (uint32_t round = 1; round <= 3; ++round) {
      REQUIRE(engine.OpenRound(round, ids).ok());
      auto support = engine.SecureSupport(round);
      REQUIRE(support.ok());
      std::vector<uint64_t> sum(support->size());
      const uint64_t mask = (uint64_t{1} << cfg.secure.ring.bits) - 1;
      for (size_t j = 0; j < sum.size(); ++j) sum[j] = static_cast<uint64_t>(int64_t(j % 7) * 1000 - 3000 + round) & mask;
      REQUIRE(engine.IngestSecureSum(round, ids, sum).ok());
      auto out = engine.CloseRound(1);
      REQUIRE(out.ok());
      REQUIRE(out->applied);
    }
    const auto g = engine.global_model();
    return std::vector<float>(g.begin(), g.end());
  };
  const std::vector<float> rate4 = run(1, 4, 0), scale4 = run(4, 1, 0), plain = run(1, 1, 0);
  CHECK(scale4 == rate4);  // plain server SGD: rate x scale is the step, bit for bit (powers of two)
  CHECK(scale4 != plain);  // an ignored scale would leave the rate-1 model
  // Plain reference: with lossless steps and SGD at rate 1, each coordinate
  // moved by scale x the mean of the decoded sum, summed over the rounds.
  size_t moved = 0;
  for (size_t i = 0; i < dim; ++i) {
    const double d_plain = plain[i], d_scaled = scale4[i];
    CHECK(d_scaled == doctest::Approx(4 * d_plain).epsilon(1e-5));
    moved += d_plain != 0;
  }
  CHECK(moved > 0);
  CHECK(run(4, 1, 0.9f) == run(1, 4, 0.9f));  // with server momentum too (linear in the step)
  CHECK(run(0.5, 1, 0) != plain);
}

TEST_CASE("a guided support comes from the public broadcast steps alone, the same for the server and every client") {
  constexpr uint32_t n = 6;
  constexpr uint32_t dim = 400;
  EngineConfig cfg = SecureEngine(n);
  cfg.broadcast = {.dense = false, .density = 0.05, .values = ValueCoding::kTernary};  // sparse steps, as shipped
  cfg.secure.guided = 0.02;
  cfg.secure.guide_rounds = 3;
  cfg.secure.guide_decay = 0.1;
  cfg.secure.guide_block = 4;
  RoundEngine engine(std::vector<float>(dim, 0.0f), cfg);
  std::vector<uint64_t> ids(n);
  for (uint32_t u = 0; u < n; ++u) ids[u] = 10 + u;
  std::vector<std::vector<float>> residuals(n, std::vector<float>(dim, 0.0f));
  Rng rng(8);
  for (uint32_t round = 1; round <= 6; ++round) {
    REQUIRE(engine.OpenRound(round, ids).ok());
    auto guide = engine.SecureSupportGuide();
    REQUIRE(guide.ok());
    // Plain reference: the decayed |values| of the last three steps the server
    // broadcast (what every client is sent), summed per block of 4, the 2
    // largest blocks (8 coordinates) by a full sort.
    std::vector<double> score(dim / 4, 0.0);
    double w = 1;
    for (uint32_t v = engine.version(); v >= 2 && v + 3 > engine.version(); --v) {
      auto step = DecodeUplink(engine.StepPayload(v), dim);
      REQUIRE(step.ok());
      for (size_t j = 0; j < step->indices.size(); ++j) score[step->indices[j] / 4] += w * std::fabs(step->values[j]);
      w *= 0.1;
    }
    std::vector<uint32_t> order(dim / 4);
    for (uint32_t i = 0; i < dim / 4; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return score[a] > score[b]; });
    std::vector<uint32_t> ref_blocks;
    for (uint32_t i : order) {
      if (ref_blocks.size() == 2 || !(score[i] > 0)) break;
      ref_blocks.push_back(i);
    }
    std::sort(ref_blocks.begin(), ref_blocks.end());
    std::vector<uint32_t> ref;
    for (uint32_t b : ref_blocks) {
      for (uint32_t i = 4 * b; i < 4 * b + 4; ++i) ref.push_back(i);
    }
    CHECK(*engine.SecureSupportGuideBlocks() == ref_blocks);
    CHECK(*guide == ref);
    CHECK(guide->empty() == (round == 1));  // nothing broadcast before the first round
    auto support = engine.SecureSupport(round);
    REQUIRE(support.ok());
    CHECK(support->size() == 40);
    CHECK(*support == *GuidedSupport(SharedSupportSeed(77, round), dim, 40, *guide));
    // A client's view: the guide as the task carries it, decoded, then RoundSupport.
    auto sent = EncodeSupportGuide(ref_blocks, dim, 4);
    REQUIRE(sent.ok());
    auto got = DecodeSupportGuide(*sent, dim, 40);
    REQUIRE(got.ok());
    privacy::SecurePipelineConfig client_view;
    client_view.support_seed = 77;
    CHECK(*privacy::RoundSupport(client_view, round, dim, 0.1, *got) == *support);
    // The clients' updates (the ring sum, unmasked: the protocol is tested above).
    const RingQuantConfig& ring = engine.config().secure.ring;
    std::vector<uint64_t> sum(support->size(), 0);
    for (uint32_t u = 0; u < n; ++u) {
      std::vector<float> delta(dim);
      for (auto& v : delta) v = static_cast<float>(rng.Normal() * 0.1);
      auto input = RingQuantize(delta, *support, ring, round * 100 + u, residuals[u]);
      REQUIRE(input.ok());
      for (size_t j = 0; j < sum.size(); ++j) sum[j] = (sum[j] + (*input)[j]) & ((uint64_t{1} << ring.bits) - 1);
    }
    REQUIRE(engine.IngestSecureSum(round, ids, sum).ok());
    // What the clients sent this round cannot move this round's guide or support.
    CHECK(*engine.SecureSupportGuide() == *guide);
    CHECK(*engine.SecureSupport(round) == *support);
    auto out = engine.CloseRound(1);
    REQUIRE(out.ok());
    REQUIRE(out->applied);
  }
}

TEST_CASE("downlink.merge_version = 3: a client that missed steps rebuilds the server's model bit for bit from a merged piece coded against the round's guide") {
  constexpr uint32_t n = 6;
  constexpr uint32_t dim = 2000;
  EngineConfig cfg = SecureEngine(n);
  cfg.broadcast = {.dense = false, .density = 0.02, .values = ValueCoding::kTernary};
  cfg.full_model.bits = 0;
  cfg.secure.guided = 0.04;
  cfg.secure.guide_rounds = 4;
  cfg.secure.guide_block = 4;
  cfg.merge_chains = true;
  EngineConfig v2cfg = cfg;
  v2cfg.merge_version = 2;
  cfg.merge_version = 3;
  const std::vector<float> init(dim, 0.0f);
  RoundEngine engine(init, cfg), twin(init, v2cfg);
  std::vector<uint64_t> ids(n);
  for (uint32_t u = 0; u < n; ++u) ids[u] = 10 + u;
  std::vector<float> held1;  // a client holding version 1 that misses every round
  REQUIRE(ApplyModelPayload(**engine.ModelPayloadFor(0), 0, held1, dim).ok());
  std::vector<std::vector<float>> residuals(n, std::vector<float>(dim, 0.0f));
  Rng rng(9);
  size_t merged = 0;
  for (uint32_t round = 1; round <= 10; ++round) {
    REQUIRE(engine.OpenRound(round, ids).ok());
    REQUIRE(twin.OpenRound(round, ids).ok());
    // The client's guide as its task carries it.
    auto blocks = engine.SecureSupportGuideBlocks();
    REQUIRE(blocks.ok());
    auto sent = EncodeSupportGuide(*blocks, dim, 4);
    REQUIRE(sent.ok());
    auto guide = DecodeSupportGuide(*sent, dim, 200);
    REQUIRE(guide.ok());
    if (engine.version() > 2) {
      auto p = engine.ModelPayloadFor(1);
      auto p2 = twin.ModelPayloadFor(1);
      REQUIRE(p.ok());
      REQUIRE(p2.ok());
      std::vector<std::span<const uint8_t>> pieces;
      auto h = ParseModelPayload(**p, dim, &pieces);
      REQUIRE(h.ok());
      REQUIRE(h->kind == ModelPayloadKind::kMerged);
      // Version 3 when it is smaller than version 2 of the same steps, else version 2.
      CHECK((pieces[0][5] == 3 || pieces[0][5] == 2));
      CHECK((*p)->size() <= (*p2)->size());
      if (pieces[0][5] == 3) ++merged;
      std::vector<float> got = held1;
      auto to = ApplyModelPayload(**p, 1, got, dim, nullptr, nullptr, nullptr, *guide);
      REQUIRE_MESSAGE(to.ok(), to.error().ToString());
      CHECK(*to == engine.version());
      CHECK(std::memcmp(got.data(), engine.global_model().data(), 4 * dim) == 0);
      if (pieces[0][5] == 3 && !guide->empty()) {
        // Without the guide (or with another) the piece is refused and the copy left as it was.
        std::vector<float> copy = held1;
        auto refused = ApplyModelPayload(**p, 1, copy, dim);
        REQUIRE_FALSE(refused.ok());
        CHECK(refused.error().message().find("another guide") != std::string::npos);
        CHECK(copy == held1);
      }
    }
    auto support = engine.SecureSupport(round);
    REQUIRE(support.ok());
    const RingQuantConfig& ring = engine.config().secure.ring;
    std::vector<uint64_t> sum(support->size(), 0);
    for (uint32_t u = 0; u < n; ++u) {
      std::vector<float> delta(dim);
      // Most of the movement in 20 blocks of 4 (what the guide will hold), some noise elsewhere.
      for (size_t i = 0; i < dim; ++i) delta[i] = static_cast<float>(rng.Normal() * 0.01 + (i % 100 < 4 ? 0.2 : 0.0));
      auto input = RingQuantize(delta, *support, ring, round * 100 + u, residuals[u]);
      REQUIRE(input.ok());
      for (size_t j = 0; j < sum.size(); ++j) sum[j] = (sum[j] + (*input)[j]) & ((uint64_t{1} << ring.bits) - 1);
    }
    REQUIRE(engine.IngestSecureSum(round, ids, sum).ok());
    REQUIRE(twin.IngestSecureSum(round, ids, sum).ok());
    REQUIRE(engine.CloseRound(1).ok());
    REQUIRE(twin.CloseRound(1).ok());
    REQUIRE(std::memcmp(engine.global_model().data(), twin.global_model().data(), 4 * dim) == 0);
  }
  CHECK(merged >= 6);  // guided steps: version 3 is the smaller nearly every round
}

TEST_CASE("downlink.merge_version = 4: a client keeping the guide's steps rebuilds the server's model bit for bit from a piece coded given each missed round's support, and a wrong history is refused") {
  constexpr uint32_t n = 6;
  constexpr uint32_t dim = 2000;
  EngineConfig cfg = SecureEngine(n);
  cfg.broadcast = {.dense = false, .density = 0.02, .values = ValueCoding::kTernary};
  cfg.full_model.bits = 0;
  cfg.secure.guided = 0.04;
  cfg.secure.guide_rounds = 3;
  cfg.secure.guide_block = 4;
  cfg.secure.derive_guide = true;
  cfg.merge_chains = true;
  EngineConfig v2cfg = cfg;
  v2cfg.merge_version = 2;
  cfg.merge_version = 4;
  const std::vector<float> init(dim, 0.0f);
  RoundEngine engine(init, cfg), twin(init, v2cfg);
  std::vector<uint64_t> ids(n);
  for (uint32_t u = 0; u < n; ++u) ids[u] = 10 + u;
  std::vector<std::vector<float>> residuals(n, std::vector<float>(dim, 0.0f));
  Rng rng(19);
  // The client: up to date at version 5 (after round 4), keeping steps 3..5, then missing every round.
  constexpr uint32_t kHeld = 5;
  std::vector<float> held;
  std::vector<SparseUpdate> history;
  std::vector<uint32_t> applied_rounds;
  size_t v4_sent = 0;
  for (uint32_t round = 1; round <= 14; ++round) {
    REQUIRE(engine.OpenRound(round, ids).ok());
    REQUIRE(twin.OpenRound(round, ids).ok());
    if (engine.version() == kHeld && held.empty()) {
      held.assign(engine.global_model().begin(), engine.global_model().end());
      for (uint32_t v = kHeld - 2; v <= kHeld; ++v) {
        auto step = DecodeUplink(engine.StepPayload(v), dim);
        REQUIRE(step.ok());
        history.push_back(*step);
      }
    }
    if (!held.empty() && engine.version() > kHeld + 1) {
      CHECK(engine.MergeV4For(kHeld, kHeld - 3));
      CHECK_FALSE(engine.MergeV4For(kHeld, kHeld - 2));  // two steps kept: not the guide's three
      auto p = engine.ModelPayloadFor(kHeld, kHeld - 3);
      auto p2 = twin.ModelPayloadFor(kHeld);
      REQUIRE(p.ok());
      REQUIRE(p2.ok());
      CHECK((*p)->size() <= (*p2)->size());
      std::vector<std::span<const uint8_t>> pieces;
      auto h = ParseModelPayload(**p, dim, &pieces);
      REQUIRE(h.ok());
      REQUIRE(h->kind == ModelPayloadKind::kMerged);
      // The client's view: the plan's parameters, its kept steps.
      privacy::SecurePipelineConfig client_view;
      client_view.support_seed = engine.config().secure.support_seed;
      client_view.guided = 0.04;
      client_view.guide_rounds = 3;
      client_view.guide_decay = engine.config().secure.guide_decay;
      client_view.guide_block = 4;
      const StepSupportFn supports =
          privacy::StepSupportsFromHistory(history, client_view, cfg.uplink_density, dim);
      if (pieces[0][5] == 4) {
        ++v4_sent;
        auto v4 = DecodeMergedStepsV4(pieces[0], dim, supports);
        REQUIRE_MESSAGE(v4.ok(), v4.error().ToString());
        CHECK(v4->rounds == applied_rounds);  // the rounds that made a version, skipped ones left out
        // A history ending one step early (the client's last kept step dropped): refused, the copy untouched.
        const StepSupportFn wrong = privacy::StepSupportsFromHistory(std::span(history).first(2), client_view,
                                                                     cfg.uplink_density, dim);
        std::vector<float> copy = held;
        CHECK_FALSE(ApplyModelPayload(**p, kHeld, copy, dim, nullptr, nullptr, nullptr, {}, &wrong).ok());
        // Without supports: refused, naming what it needs.
        auto bare = ApplyModelPayload(**p, kHeld, copy, dim);
        REQUIRE_FALSE(bare.ok());
        CHECK(bare.error().message().find("kept steps") != std::string::npos);
      }
      std::vector<float> got = held;
      auto to = ApplyModelPayload(**p, kHeld, got, dim, nullptr, nullptr, nullptr, {}, &supports);
      REQUIRE_MESSAGE(to.ok(), to.error().ToString());
      CHECK(*to == engine.version());
      CHECK(std::memcmp(got.data(), engine.global_model().data(), 4 * dim) == 0);
      // The chain's steps as the agent records them: the same steps.
      auto steps = ChainPayloadSteps(**p, dim, {}, &supports);
      REQUIRE(steps.ok());
      CHECK(steps->size() == engine.version() - kHeld);
    }
    if (round == 8 || round == 11) {  // no quorum: no version, no step
      REQUIRE_FALSE(engine.CloseRound(1)->applied);
      REQUIRE_FALSE(twin.CloseRound(1)->applied);
      continue;
    }
    auto support = engine.SecureSupport(round);
    REQUIRE(support.ok());
    const RingQuantConfig& ring = engine.config().secure.ring;
    std::vector<uint64_t> sum(support->size(), 0);
    for (uint32_t u = 0; u < n; ++u) {
      std::vector<float> delta(dim);
      for (size_t i = 0; i < dim; ++i) delta[i] = static_cast<float>(rng.Normal() * 0.01 + (i % 100 < 4 ? 0.2 : 0.0));
      auto input = RingQuantize(delta, *support, ring, round * 100 + u, residuals[u]);
      REQUIRE(input.ok());
      for (size_t j = 0; j < sum.size(); ++j) sum[j] = (sum[j] + (*input)[j]) & ((uint64_t{1} << ring.bits) - 1);
    }
    REQUIRE(engine.IngestSecureSum(round, ids, sum).ok());
    REQUIRE(twin.IngestSecureSum(round, ids, sum).ok());
    REQUIRE(engine.CloseRound(1)->applied);
    REQUIRE(twin.CloseRound(1)->applied);
    if (engine.version() > kHeld) applied_rounds.push_back(round);
    REQUIRE(std::memcmp(engine.global_model().data(), twin.global_model().data(), 4 * dim) == 0);
  }
  CHECK(v4_sent >= 5);  // version 4 the smaller nearly every round
}

TEST_CASE("settings: pipeline = secure takes the secure defaults, sizes the ring by the round, refuses a robust rule") {
  auto read = [](const std::vector<std::string>& overrides) -> Result<RunSettings> {
    FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseTomlWithOverrides("pipeline = \"secure\"\n", "s.toml", overrides));
    RunSettings s;
    FRUGAL_RETURN_IF_ERROR(ApplyPipelineTable(t, s.pipeline, overrides));
    ConfigReader r(t);
    FRUGAL_RETURN_IF_ERROR(ReadRunSettings(r, s));
    r.CheckUnknown();
    if (r.error()) return *r.error();
    return s;
  };
  auto ten = read({"round.clients_per_round=10"});
  REQUIRE_MESSAGE(ten.ok(), ten.status().ToString());
  CHECK(ten->pipeline == Pipeline::kSecure);
  CHECK(ten->engine.pipeline == Pipeline::kSecure);
  CHECK(ten->uses_residuals());
  CHECK(ten->engine.uplink_density == 0.1);
  CHECK(ten->engine.secure.ring.max_summands == 10);
  CHECK(ten->engine.secure.ring.bits == 8);  // 12 levels per client: 2^7 - 1 >= 12 * 10
  CHECK(RingMaxLevel(ten->engine.secure.ring) >= 12);
  auto hundred = read({"round.clients_per_round=100"});
  REQUIRE(hundred.ok());
  CHECK(hundred->engine.secure.ring.bits == 12);
  CHECK(RingMaxLevel(hundred->engine.secure.ring) >= 12);
  auto explicit_bits = read({"round.clients_per_round=10", "secure.bits=20"});
  REQUIRE(explicit_bits.ok());
  CHECK(explicit_bits->engine.secure.ring.bits == 20);
  auto robust = read({"server.robust=\"median\""});
  REQUIRE(!robust.ok());
  CHECK(robust.error().message().find("server sees only the sum") != std::string::npos);
  CHECK(!read({"secure.dropout=0.95"}).ok());
  CHECK(!read({"secure.bits=4"}).ok());  // no level for each of 10 clients (5 bits: 1, ternary)
  CHECK(RingMaxLevel(read({"secure.bits=5"}).value().engine.secure.ring) == 1);
  // Modular clipping: a 4-bit ring with one level for each of 7 clients, summing 10.
  CHECK(!read({}).value().engine.secure.ring.modular);  // off unless asked for
  auto modular = read({"round.clients_per_round=10", "secure.bits=4", "secure.max_clients=7", "secure.modular_clip=true"});
  REQUIRE_MESSAGE(modular.ok(), modular.status().ToString());
  CHECK(modular->engine.secure.ring.modular);
  CHECK(modular->engine.secure.ring.bits == 4);
  CHECK(modular->engine.secure.ring.max_summands == 7);
  CHECK(RingMaxLevel(modular->engine.secure.ring) == 1);
  auto short_ring = read({"round.clients_per_round=10", "secure.bits=4", "secure.max_clients=7"});
  REQUIRE(!short_ring.ok());
  CHECK(short_ring.error().message().find("secure.max_clients (7) is below") != std::string::npos);
  CHECK(short_ring.error().message().find("secure.modular_clip") != std::string::npos);
  auto modular_dp = read({"round.clients_per_round=10", "secure.max_clients=7", "secure.modular_clip=true",
                          "privacy.mode=\"distributed\"", "privacy.noise_multiplier=1", "privacy.clip=1"});
  REQUIRE(!modular_dp.ok());
  CHECK(modular_dp.error().message().find("secure.modular_clip = true with privacy.mode") != std::string::npos);
  CHECK(!read({"secure.modular_clip=\"yes\""}).ok());  // a boolean
  CHECK(read({}).value().engine.secure.step_scale == 1);
  CHECK(read({"secure.step_scale=4"}).value().engine.secure.step_scale == 4);
  CHECK(!read({"secure.step_scale=0"}).ok());
  CHECK(!read({"secure.step_scale=-1"}).ok());
  auto six = read({"round.clients_per_round=10", "secure.bits=6"});
  REQUIRE(six.ok());
  CHECK(RingMaxLevel(six->engine.secure.ring) == 3);
  auto guided = read({"secure.guided=0.05", "secure.guide_rounds=10", "secure.guide_decay=0.8"});
  REQUIRE_MESSAGE(guided.ok(), guided.status().ToString());
  CHECK(guided->engine.secure.guided == 0.05);
  CHECK(guided->engine.secure.guide_rounds == 10);
  CHECK(guided->engine.secure.guide_decay == 0.8);
  CHECK(!read({"secure.guided=0.05", "secure.guide_block=0"}).ok());
  CHECK(read({}).value().engine.secure.guided == 0);  // off unless asked for
  auto too_big = read({"secure.guided=0.2"});  // above uplink.density = 0.1
  REQUIRE(!too_big.ok());
  CHECK(too_big.error().message().find("uplink.density") != std::string::npos);
  CHECK(!read({"secure.guided=0.05", "secure.guide_rounds=0"}).ok());
  CHECK(!read({"secure.guide_decay=0"}).ok());
  CHECK(read({}).value().engine.secure.run_protocol);  // the protocol runs unless skipped
  CHECK(!read({"secure.run_protocol=false"}).value().engine.secure.run_protocol);
  CHECK(!read({}).value().engine.secure.identity);  // keys as relayed unless bound
  CHECK(read({"secure.identity=\"ca\""}).value().engine.secure.identity);
  auto bad_identity = read({"secure.identity=\"x509\""});
  REQUIRE(!bad_identity.ok());
  CHECK(bad_identity.error().message().find("secure.identity must be") != std::string::npos);
}

TEST_CASE("secure.identity = ca in the simulator's round: the same sum, and exactly the credentials' bytes more") {
  auto plan = privacy::PlanSecureRound(5, 2, 12, 0.05, 0.33, 16, 40);
  REQUIRE(plan.ok());
  privacy::SecureRoundConfig bound = *plan;
  bound.identity = true;
  auto ca = privacy::SimulatedIdentityAuthority::Create(9);
  REQUIRE(ca.ok());
  std::vector<privacy::SecureIdentity> ids;
  for (uint32_t u = 0; u < plan->clients; ++u) ids.push_back(*ca->Issue(u * 37));  // names of 1 to 3 digits
  auto plain = privacy::LocalSecureRound::Start(*plan, CpuClock);
  auto with_ids = privacy::LocalSecureRound::Start(bound, CpuClock, privacy::SecureProtocol::kRun, ids);
  REQUIRE(plain.ok());
  REQUIRE_MESSAGE(with_ids.ok(), with_ids.status().ToString());
  Rng rng(4);
  std::vector<uint32_t> delivered;
  for (uint32_t u = 0; u < plan->clients; ++u) {
    std::vector<uint64_t> in(plan->length);
    for (auto& v : in) v = rng.NextU64() & privacy::RingMask(plan->bits);
    REQUIRE((*plain)->MaskedInput(u, in).ok());
    REQUIRE((*with_ids)->MaskedInput(u, in).ok());
    if (u != 4) delivered.push_back(u);
  }
  auto a = (*plain)->Finish(delivered);
  auto b = (*with_ids)->Finish(delivered);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->sum == b->sum);
  CHECK(a->survivors == b->survivors);
  // Per client: its credential and signature up once (stage 1); down, each
  // neighbour's in its key directory (stage 2). Measured from the encoded
  // messages, checked against the format: 1 + name + 33 + 64 + 64 bytes each.
  auto extra = [&](uint32_t u) { return 1 + ids[u].credential.name.size() + 33 + 64 + 64; };
  for (uint32_t u = 0; u < plan->clients; ++u) {
    const auto ca_cost = (*with_ids)->cost(u), plain_cost = (*plain)->cost(u);
    CHECK(ca_cost.bytes_up - plain_cost.bytes_up == extra(u));
    size_t down = 0;
    const auto neighbours = privacy::SecureNeighbours(*plan, u);
    REQUIRE(neighbours.ok());
    for (uint32_t v : *neighbours) down += extra(v);
    CHECK(ca_cost.bytes_down - plain_cost.bytes_down == down);
  }
  // A client without an identity cannot take part in a bound round.
  CHECK(!privacy::LocalSecureRound::Start(bound, CpuClock).ok());
}

}  // TEST_SUITE


TEST_CASE("a client that keeps its last steps derives every round's guide as the server computes it") {
  // Clients that download every round, every third round (a merged piece of
  // three steps), or keep too few steps: the history-derived guide must be
  // the engine's blocks exactly whenever the history covers the guide's steps.
  constexpr uint32_t n = 4;
  constexpr uint32_t dim = 400;
  EngineConfig cfg = SecureEngine(n);
  cfg.broadcast = {.dense = false, .density = 0.05, .values = ValueCoding::kTernary};
  cfg.merge_chains = true;
  cfg.secure.guided = 0.05;
  cfg.secure.guide_rounds = 3;
  cfg.secure.guide_decay = 0.5;
  cfg.secure.guide_block = 4;
  cfg.secure.derive_guide = true;
  RoundEngine engine(std::vector<float>(dim, 0.0f), cfg);
  std::vector<uint64_t> ids(n);
  for (uint32_t u = 0; u < n; ++u) ids[u] = 10 + u;
  struct Client {
    uint32_t every;     // downloads in rounds 1, 1 + every, ...
    uint32_t capacity;  // steps kept
    StepHistory history;
    uint32_t held = 1;
    uint32_t tracked_from = 1;  // what a coordinator or the simulator tracks (HistoryAfterDownload)
  };
  std::vector<Client> clients = {{1, 4, StepHistory(4)}, {3, 3, StepHistory(3)}, {2, 1, StepHistory(1)}};
  for (Client& c : clients) c.history.Reset(1);  // version 1 built from the seed
  Rng rng(5);
  uint32_t derived = 0, merged = 0, wrong_window_differs = 0;
  for (uint32_t round = 1; round <= 12; ++round) {
    REQUIRE(engine.OpenRound(round, ids).ok());
    auto blocks = engine.SecureSupportGuideBlocks();
    REQUIRE(blocks.ok());
    const uint32_t k = engine.SecureGuideSteps();
    CHECK(k == std::min<uint32_t>(3, engine.version() - 1));
    for (Client& c : clients) {
      if ((round - 1) % c.every != 0) continue;
      auto payload = engine.ModelPayloadFor(c.held);
      REQUIRE(payload.ok());
      std::vector<std::span<const uint8_t>> pieces;
      auto h = ParseModelPayload(**payload, dim, &pieces);
      REQUIRE(h.ok());
      merged += h->kind == ModelPayloadKind::kMerged ? 1 : 0;
      auto steps = ChainPayloadSteps(**payload, dim);
      REQUIRE(steps.ok());
      c.history.Append(c.held, std::move(*steps));
      c.held = engine.version();
      c.tracked_from = HistoryAfterDownload(c.tracked_from, c.capacity, false, c.held);
      CHECK(c.tracked_from == c.history.from());
      CHECK(c.history.version() == c.held);
      const bool covers = engine.ClientDerivesGuide(c.tracked_from);
      CHECK(covers == (k > 0 && c.capacity >= k));
      if (!covers) continue;
      ++derived;
      CHECK(privacy::GuideBlocksFromSteps(c.history.Newest(k), dim, cfg.secure, cfg.uplink_density) == *blocks);
      // A window one step off (the previous round's) is another guide: the check above can fail.
      if (k >= 1 && c.history.Newest(k + 1).size() == k + 1 &&
          privacy::GuideBlocksFromSteps(c.history.Newest(k + 1).first(k), dim, cfg.secure, cfg.uplink_density) !=
              *blocks) {
        ++wrong_window_differs;
      }
    }
    auto support = engine.SecureSupport(round);
    REQUIRE(support.ok());
    const RingQuantConfig& ring = engine.config().secure.ring;
    std::vector<uint64_t> sum(support->size(), 0);
    for (uint32_t u = 0; u < n; ++u) {
      std::vector<float> delta(dim);
      for (auto& v : delta) v = static_cast<float>(rng.Normal() * 0.1);
      std::vector<float> resid(dim, 0.0f);
      auto input = RingQuantize(delta, *support, ring, round * 100 + u, resid);
      REQUIRE(input.ok());
      for (size_t j = 0; j < sum.size(); ++j) sum[j] = (sum[j] + (*input)[j]) & ((uint64_t{1} << ring.bits) - 1);
    }
    REQUIRE(engine.IngestSecureSum(round, ids, sum).ok());
    auto out = engine.CloseRound(1);
    REQUIRE(out.ok());
    REQUIRE(out->applied);
  }
  CHECK(derived >= 10);
  CHECK(merged >= 2);
  CHECK(wrong_window_differs >= 3);
  // A full model restarts the history with no steps: nothing to derive from.
  CHECK(HistoryAfterDownload(5, 3, true, 12) == 12);
  CHECK_FALSE(engine.ClientDerivesGuide(engine.version()));
  // A client that keeps nothing, or holds nothing, has no history.
  CHECK(HistoryAfterDownload(5, 0, false, 12) == 0);
  CHECK(HistoryAfterDownload(0, 3, false, 12) == 0);
  CHECK(HistoryAfterDownload(5, 3, false, 12) == 9);
  CHECK(HistoryAfterDownload(10, 3, false, 12) == 10);
  CHECK_FALSE(HistoryCovers(0, 12, 0));
  CHECK(HistoryCovers(9, 12, 3));
  CHECK_FALSE(HistoryCovers(10, 12, 3));
}

}  // namespace
}  // namespace frugal
