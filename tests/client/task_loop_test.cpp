// The agent's I/O-free task loop, driven with hand-made Envelopes: version 1
// built from the run's seed, a task served end to end against the round
// engine, and the policy on the coordinator's error codes (stop, reconnect
// with backoff, or keep serving), with the process exit code each stop gives,
// and secure tasks answered stage by stage.
#include "frugal/client/task_loop.h"

#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "client/task_loop_rig.h"
#include "data/temp_dir.h"
#include "frugal/client/agent.h"
#include "frugal/codec/downlink.h"
#include "frugal/codec/shared_support.h"
#include "frugal/core/random.h"
#include "frugal/core/streams.h"
#include "frugal/privacy/secure_round.h"
#include "frugal/proto/convert.h"
#include "frugal/round/client_task.h"
#include "frugal/proto/frame.h"
#include "frugal/round/engine.h"
#include "frugal/round/lean_round.h"
#include "frugal/round/model_payload.h"
#include "frugal/round/step_history.h"
#include "frugal/codec/zero_set.h"
#include "frugal/privacy/secure_pipeline.h"
#include "frugal/model/prune.h"

namespace frugal::client {
namespace {

using Kind = LoopDecision::Kind;

v1::Envelope RegisterEnvelope(uint32_t dim, bool seed_init, uint64_t seed,
                              v1::CodecConfig::Values values = v1::CodecConfig::VALUES_TERNARY) {
  v1::Envelope env;
  v1::Register* r = env.mutable_register_();
  r->set_protocol_version(kProtocolVersion);
  r->set_client_id(7);
  r->set_run_id("test");
  r->set_model("logreg");
  r->set_dim(dim);
  r->set_seed_init(seed_init);
  r->set_seed(seed);
  // The run's task configuration travels once, in Register.
  TrainConfig tc;
  tc.batch_size = 8;
  ToWire(tc, 0, r->mutable_train());
  ToWire(UplinkConfig{.density = 0.3}, true, r->mutable_codec());
  r->mutable_codec()->set_values(values);
  return env;
}

// An agent that adopted the unpruned Cnn of 28x28x1 images (holding no
// version yet) and an engine whose version 1 is that Cnn from seed 3: the
// set-up of the CNN pruning tests.
struct CnnAgent {
  static std::unique_ptr<Model> Cnn() {
    auto m = MakeModel("cnn", 784, 10);
    REQUIRE(m.ok());
    return std::move(*m);
  }
  static Dataset SizesOnly() {  // only its sizes matter to Adopt
    Dataset d;
    d.num_features = 784;
    d.num_classes = 10;
    return d;
  }
  static std::vector<float> Initial(const Model& m) {
    std::vector<float> v(m.num_params());
    m.InitParams(v, 3);
    return v;
  }

  Rig rig;
  Dataset images = SizesOnly();
  std::unique_ptr<Model> model = Cnn();
  uint32_t dim = static_cast<uint32_t>(model->num_params());
  RoundEngine engine{Initial(*model), EngineConfig{}};
  LocalState state{rig.dir.Path("cnn.bin")};

  CnnAgent() { REQUIRE(state.Adopt("cnn", dim, images).ok()); }
};

v1::Envelope ErrorFromCoordinator(v1::Error::Code code, const std::string& message, uint32_t round = 0) {
  v1::Envelope env;
  env.mutable_error()->set_code(code);
  env.mutable_error()->set_message(message);
  env.mutable_error()->set_round(round);
  return env;
}

v1::Envelope TaskEnvelope(uint32_t round, uint32_t version) {
  v1::Envelope env;
  v1::Task* t = env.mutable_task();
  t->set_round(round);
  t->set_model_version(version);
  return env;
}

v1::Envelope ModelEnvelope(uint32_t round, const std::vector<uint8_t>& bytes) {
  v1::Envelope env;
  env.mutable_model()->set_round(round);
  env.mutable_model()->set_payload(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return env;
}

}  // namespace

TEST_SUITE("client") {
  TEST_CASE("after a Register with seed_init the agent holds version 1 built from the run's seed") {
    Rig rig;
    const uint64_t seed = 20240611;
    TaskLoop loop(rig.env, rig.state);
    CHECK(loop.Hello().hello().model_version() == 0);
    const LoopStep step = loop.OnEnvelope(RegisterEnvelope(rig.Dim(), true, seed));
    CHECK(step.decision.kind == Kind::kContinue);
    CHECK(loop.registered());
    REQUIRE(rig.state.held_version() == 1);
    std::vector<float> expected(rig.Dim());
    (*MakeModel("logreg", 4, 3))->InitParams(expected, StreamSeed(seed, SeedStream::kInit));
    CHECK(rig.state.params() == expected);
    // The next session announces it, so the coordinator sends a chain.
    CHECK(TaskLoop(rig.env, rig.state).Hello().hello().model_version() == 1);

    // A client that already holds a version keeps it.
    rig.state.InitFromSeed(seed + 1, ModelInit::kGlorot);
    CHECK(rig.state.params() == expected);
    // Without seed_init nothing is built: the first download is a full model.
    Rig plain;
    TaskLoop other(plain.env, plain.state);
    other.OnEnvelope(RegisterEnvelope(plain.Dim(), false, seed));
    CHECK(plain.state.held_version() == 0);
    // model_init = "zeros": version 1 is all zeros; an unknown init stops the client, naming it.
    Rig zeros;
    v1::Envelope reg = RegisterEnvelope(zeros.Dim(), true, seed);
    reg.mutable_register_()->set_model_init("zeros");
    TaskLoop(zeros.env, zeros.state).OnEnvelope(reg);
    REQUIRE(zeros.state.held_version() == 1);
    CHECK(zeros.state.params() == std::vector<float>(zeros.Dim(), 0.0f));
    Rig odd;
    reg.mutable_register_()->set_model_init("he-normal");
    const LoopStep refused = TaskLoop(odd.env, odd.state).OnEnvelope(reg);
    CHECK(refused.decision.kind == Kind::kStop);
    REQUIRE(refused.decision.error.has_value());
    CHECK(refused.decision.error->message().find("he-normal") != std::string::npos);
    CHECK(odd.state.held_version() == 0);
  }

  TEST_CASE("[prune]: the agent's model and residual follow a payload's shape change, and a restarted agent finds the residual at the pruned shape") {
    Rig rig;
    const Dataset& data = rig.local.data;
    auto model = MakeModel("mlp", 4, 3);
    REQUIRE(model.ok());
    const auto* mlp = dynamic_cast<const Mlp*>(model->get());
    REQUIRE(mlp != nullptr);
    const std::vector<uint32_t> sizes(mlp->layer_sizes().begin(), mlp->layer_sizes().end());
    const auto dim = static_cast<uint32_t>(mlp->num_params());
    std::vector<float> v1(dim);
    mlp->InitParams(v1, 3);
    RoundEngine engine(v1, EngineConfig{});
    LocalState state(rig.dir.Path("residual.bin"));
    REQUIRE(state.Adopt("mlp", dim, data).ok());
    REQUIRE(state.Apply(**engine.ModelPayloadFor(0)).ok());
    std::vector<float>& resid = state.Residual();
    for (size_t i = 0; i < resid.size(); ++i) resid[i] = static_cast<float>(i % 97) * 0.01f;
    const std::vector<float> before = resid;
    state.SaveResidualFile();
    const std::vector<float> held_v1 = state.params();
    LocalState stale(rig.dir.Path("stale.bin"));  // holds version 1 across the prune step
    REQUIRE(stale.Adopt("mlp", dim, data).ok());
    REQUIRE(stale.Apply(**engine.ModelPayloadFor(0)).ok());

    std::vector<uint32_t> widths(sizes.size() - 2);
    for (size_t l = 0; l < widths.size(); ++l) widths[l] = sizes[l + 1] / 2;
    const MlpShapeChange change = ChooseKeptUnits(sizes, engine.global_model(), widths);
    REQUIRE(engine.ApplyShapeChange(change).ok());
    const std::vector<uint32_t> map = ShapeChangeParamMap(change);
    auto held = state.Apply(**engine.ModelPayloadFor(1));  // a chain holding the shape change
    REQUIRE(held.ok());
    CHECK(*held == 2);
    CHECK(state.mlp_sizes() == change.NewSizes());
    CHECK(state.dim() == map.size());
    CHECK(state.params() == ApplyParamMap(map, held_v1));  // its copy (the 8-bit full model's reconstruction), pruned
    CHECK(state.Residual() == ApplyParamMap(map, before));

    // A restart: Register carries the pruned shape; holding nothing, the agent
    // starts from the unpruned model, a full payload prunes it, and its residual
    // file is read back at the pruned dimension.
    LocalState restarted(rig.dir.Path("residual.bin"));
    const std::vector<uint8_t> shape = EncodeShapeChange(engine.shape());
    REQUIRE(restarted.Adopt("mlp", static_cast<uint32_t>(map.size()), data, shape).ok());
    CHECK(restarted.dim() == dim);
    REQUIRE(restarted.Apply(**engine.ModelPayloadFor(0)).ok());
    CHECK(restarted.mlp_sizes() == change.NewSizes());
    CHECK(restarted.Residual() == ApplyParamMap(map, before));
    // An agent reconnecting with version 1 keeps it: the chain from it prunes it.
    REQUIRE(stale.Adopt("mlp", static_cast<uint32_t>(map.size()), data, shape).ok());
    CHECK(stale.held_version() == 1);
    REQUIRE(stale.Apply(**engine.ModelPayloadFor(1)).ok());
    CHECK(stale.mlp_sizes() == change.NewSizes());
    // A Register whose shape does not match its dim is refused, naming it.
    LocalState wrong(rig.dir.Path("other.bin"));
    const Status st = wrong.Adopt("mlp", dim, data, shape);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("Register shape") != std::string::npos);
  }

  TEST_CASE("an agent keeping its last steps holds exactly the engine's, says so in Hello, and derives the engine's guide") {
    // secure.history_steps: payloads of every kind from a secure engine with a
    // guide; the agent's kept steps must give GuideBlocksFromSteps == the
    // engine's blocks whenever its history covers them, and Hello must say
    // from which version it holds them (what the coordinator tracks).
    Rig rig;
    const uint32_t dim = rig.Dim();
    EngineConfig ec;
    ec.pipeline = Pipeline::kSecure;
    ec.uplink_density = 0.6;
    ec.merge_chains = true;
    ec.broadcast = {.dense = false, .density = 0.4, .values = ValueCoding::kTernary};
    ec.secure.ring = RingQuantConfig{.bits = 16, .clip = 0.1f, .max_summands = 3};
    ec.secure.support_seed = 42;
    ec.secure.guided = 0.3;
    ec.secure.guide_rounds = 3;
    ec.secure.guide_block = 1;
    ec.secure.derive_guide = true;
    std::vector<float> v1(dim);
    (*MakeModel("logreg", 4, 3))->InitParams(v1, 3);
    RoundEngine engine(v1, ec);
    rig.state.KeepSteps(3);
    REQUIRE(rig.state.Adopt("logreg", dim, rig.local.data).ok());
    TaskLoop loop(rig.env, rig.state);
    CHECK(loop.Hello().hello().history_steps() == 3);
    CHECK(loop.Hello().hello().history_from() == 0);  // holds nothing yet
    REQUIRE(rig.state.Apply(**engine.ModelPayloadFor(0)).ok());
    CHECK(rig.state.history().from() == 1);  // a full model: no steps behind it
    const std::vector<uint64_t> ids = {1, 2, 3};
    Rng rng(3);
    uint32_t derived = 0;
    for (uint32_t round = 1; round <= 9; ++round) {
      REQUIRE(engine.OpenRound(round, ids).ok());
      if (round % 2 == 1) {  // every other round: a chain or merged piece of two steps
        REQUIRE(rig.state.Apply(**engine.ModelPayloadFor(rig.state.held_version())).ok());
        const StepHistory& h = rig.state.history();
        CHECK(h.version() == engine.version());
        CHECK(loop.Hello().hello().history_from() == h.from());
        CHECK(h.from() == std::max<uint32_t>(1, engine.version() > 3 ? engine.version() - 3 : 1));
        const uint32_t k = engine.SecureGuideSteps();
        REQUIRE(engine.ClientDerivesGuide(h.from()) == (k > 0));
        if (k > 0) {
          ++derived;
          CHECK(privacy::GuideBlocksFromSteps(h.Newest(k), dim, ec.secure, ec.uplink_density) ==
                *engine.SecureSupportGuideBlocks());
          for (uint32_t v = engine.version() - k + 1, i = 0; v <= engine.version(); ++v, ++i) {
            auto sent = DecodeBroadcastStep(engine.StepPayload(v), dim);
            REQUIRE(sent.ok());
            CHECK(h.Newest(k)[i].indices == sent->indices);  // the steps as the engine sent them
            CHECK(h.Newest(k)[i].values == sent->values);
          }
        }
      }
      auto support = engine.SecureSupport(round);
      REQUIRE(support.ok());
      std::vector<uint64_t> sum(support->size());
      for (auto& x : sum) x = rng.NextU64() & 0xffff;
      REQUIRE(engine.IngestSecureSum(round, ids, sum).ok());
      REQUIRE(engine.CloseRound(1).ok());
    }
    CHECK(derived >= 4);
    // A full model restarts the history empty; Forget drops it.
    REQUIRE(rig.state.Apply(**engine.ModelPayloadFor(0)).ok());
    CHECK(rig.state.history().from() == engine.version());
    CHECK_FALSE(engine.ClientDerivesGuide(rig.state.history().from()));
    rig.state.Forget();
    CHECK(loop.Hello().hello().history_from() == 0);
  }

  TEST_CASE("a Register whose shape or dimension does not fit is refused, and the agent still holds its model and version") {
    Rig rig;
    const Dataset& data = rig.local.data;
    auto model = MakeModel("mlp", 4, 3);
    REQUIRE(model.ok());
    const auto dim = static_cast<uint32_t>((*model)->num_params());
    std::vector<float> v1(dim);
    (*model)->InitParams(v1, 3);
    RoundEngine engine(v1, EngineConfig{});
    LocalState state(rig.dir.Path("residual.bin"));
    REQUIRE(state.Adopt("mlp", dim, data).ok());
    REQUIRE(state.Apply(**engine.ModelPayloadFor(0)).ok());
    REQUIRE(state.held_version() == 1);
    const Model* held_model = &state.model();
    const std::vector<float> held_params = state.params();
    const std::vector<uint32_t> held_sizes = state.mlp_sizes();
    auto still_held = [&] {
      CHECK(&state.model() == held_model);
      CHECK(state.held_version() == 1);
      CHECK(state.params() == held_params);
      CHECK(state.mlp_sizes() == held_sizes);
    };
    // One hidden layer of a units has 8a + 3 parameters for 4 inputs and 3
    // classes, as many as the local two-hidden-layer MLP: the count fits, the
    // layer sizes do not.
    const uint32_t a = (dim - 3) / 8;
    REQUIRE(8 * a + 3 == dim);
    const MlpShapeChange other{{4, a, 3}, {{0, 1, 2}}};
    REQUIRE(other.OldParamCount() == dim);
    Status st = state.Adopt("mlp", static_cast<uint32_t>(other.NewParamCount()), data, EncodeShapeChange(other));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code() == ErrorCode::kInvalidArgument);
    CHECK(st.error().message().find("Register shape prunes a model of other layer sizes") != std::string::npos);
    still_held();
    // A shape pruning a model of another parameter count.
    const MlpShapeChange small{{4, 8, 3}, {{0, 2, 5}}};
    st = state.Adopt("mlp", static_cast<uint32_t>(small.NewParamCount()), data, EncodeShapeChange(small));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("coordinator's model has " + std::to_string(small.OldParamCount())) !=
          std::string::npos);
    still_held();
    // Another architecture whose dimension is not the Register's.
    st = state.Adopt("logreg", dim, data);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("the local logreg has") != std::string::npos);
    still_held();
    // Undecodable shape bytes.
    const std::vector<uint8_t> garbage = {1, 2, 3};
    st = state.Adopt("mlp", dim, data, garbage);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("Register shape") != std::string::npos);
    still_held();
    // The agent serves on: the model it holds takes the next payload.
    REQUIRE(state.Apply(**engine.ModelPayloadFor(0)).ok());
    CHECK(&state.model() == held_model);
  }

  TEST_CASE("downlink.merge_chains: an agent that missed steps reconstructs from the merged payload the model the chain gives, bit for bit") {
    Rig rig;
    auto model = MakeModel("mlp", 4, 3);  // large enough that a chain beats the full model
    REQUIRE(model.ok());
    const auto dim = static_cast<uint32_t>((*model)->num_params());
    std::vector<float> v1(dim);
    (*model)->InitParams(v1, 3);
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kFrugal;
    cfg.full_model.bits = 0;
    cfg.broadcast.density = 0.005;
    EngineConfig merging = cfg;
    merging.merge_chains = true;
    EngineConfig merging2 = merging;
    merging2.merge_version = 2;  // the format with a ternary step's levels as one magnitude
    RoundEngine plain(v1, cfg), merged(v1, merging), merged2(v1, merging2);
    LocalState with_chain(rig.dir.Path("chain.bin")), with_merged(rig.dir.Path("merged.bin")),
        with_merged2(rig.dir.Path("merged2.bin"));
    REQUIRE(with_chain.Adopt("mlp", dim, rig.local.data).ok());
    REQUIRE(with_merged.Adopt("mlp", dim, rig.local.data).ok());
    REQUIRE(with_merged2.Adopt("mlp", dim, rig.local.data).ok());
    REQUIRE(with_chain.Apply(**plain.ModelPayloadFor(0)).ok());
    REQUIRE(with_merged.Apply(**merged.ModelPayloadFor(0)).ok());
    REQUIRE(with_merged2.Apply(**merged2.ModelPayloadFor(0)).ok());
    UplinkConfig up;
    up.density = 0.05;
    for (uint32_t round = 1; round <= 8; ++round) {
      const std::vector<uint64_t> sel{1, 2};
      REQUIRE(plain.OpenRound(round, sel).ok());
      REQUIRE(merged.OpenRound(round, sel).ok());
      REQUIRE(merged2.OpenRound(round, sel).ok());
      for (uint64_t c : sel) {
        // A shared drift plus per-client noise: consecutive steps' supports overlap, as real ones do.
        Rng rng(round * 10 + c);
        std::vector<float> u(dim);
        for (uint32_t i = 0; i < dim; ++i) {
          u[i] = 0.01f * static_cast<float>(i % 13) * (i % 3 == 0 ? 1.0f : 0.1f) + 0.002f * static_cast<float>(rng.Normal());
        }
        std::vector<float> resid;
        auto e = EncodeUplink(u, up, resid);
        REQUIRE(e.ok());
        REQUIRE(plain.Ingest(round, c, plain.version(), *e, 1.0).ok());
        REQUIRE(merged.Ingest(round, c, merged.version(), *e, 1.0).ok());
        REQUIRE(merged2.Ingest(round, c, merged2.version(), *e, 1.0).ok());
      }
      REQUIRE(plain.CloseRound(1).ok());
      REQUIRE(merged.CloseRound(1).ok());
      REQUIRE(merged2.CloseRound(1).ok());
    }
    auto chain = plain.ModelPayloadFor(1);
    auto one = merged.ModelPayloadFor(1);
    REQUIRE(chain.ok());
    REQUIRE(one.ok());
    std::vector<std::span<const uint8_t>> pieces;
    auto h = ParseModelPayload(**one, dim, &pieces);
    REQUIRE(h.ok());
    REQUIRE(h->kind == ModelPayloadKind::kMerged);
    CHECK((*one)->size() < (*chain)->size());
    auto a = with_chain.Apply(**chain);
    auto b = with_merged.Apply(**one);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(*a == 9);
    CHECK(*b == 9);
    REQUIRE(with_merged.params().size() == dim);
    CHECK(std::memcmp(with_merged.params().data(), with_chain.params().data(), dim * 4) == 0);
    CHECK(std::memcmp(with_merged.params().data(), merged.global_model().data(), dim * 4) == 0);
  }

  TEST_CASE("downlink.broadcast_block: an agent applies block-selected steps, as a chain and merged, to the server's model bit for bit") {
    Rig rig;
    auto model = MakeModel("mlp", 4, 3);
    REQUIRE(model.ok());
    const auto dim = static_cast<uint32_t>((*model)->num_params());
    std::vector<float> v1(dim);
    (*model)->InitParams(v1, 3);
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kFrugal;
    cfg.full_model.bits = 0;
    cfg.broadcast.density = 0.02;
    cfg.broadcast.block = 4;
    EngineConfig merging = cfg;
    merging.merge_chains = true;
    RoundEngine plain(v1, cfg), merged(v1, merging);
    LocalState every(rig.dir.Path("every.bin")), with_chain(rig.dir.Path("chain.bin")),
        with_merged(rig.dir.Path("merged.bin"));
    for (LocalState* s : {&every, &with_chain, &with_merged}) {
      REQUIRE(s->Adopt("mlp", dim, rig.local.data).ok());
      REQUIRE(s->Apply(**plain.ModelPayloadFor(0)).ok());
    }
    UplinkConfig up;  // every coordinate sent and non-zero, so every entry of a kept block is in the step
    up.density = 1.0;
    up.values = ValueCoding::kFp32;
    for (uint32_t round = 1; round <= 8; ++round) {
      const std::vector<uint64_t> sel{1, 2};
      REQUIRE(plain.OpenRound(round, sel).ok());
      REQUIRE(merged.OpenRound(round, sel).ok());
      for (uint64_t c : sel) {
        Rng rng(round * 10 + c);
        std::vector<float> u(dim);
        for (uint32_t i = 0; i < dim; ++i) {
          u[i] = 0.01f * static_cast<float>(i % 13) * (i % 3 == 0 ? 1.0f : 0.1f) + 0.002f * static_cast<float>(rng.Normal());
        }
        std::vector<float> resid;
        auto e = EncodeUplink(u, up, resid);
        REQUIRE(e.ok());
        REQUIRE(plain.Ingest(round, c, plain.version(), *e, 1.0).ok());
        REQUIRE(merged.Ingest(round, c, merged.version(), *e, 1.0).ok());
      }
      REQUIRE(plain.CloseRound(1).ok());
      REQUIRE(merged.CloseRound(1).ok());
      REQUIRE(std::memcmp(plain.global_model().data(), merged.global_model().data(), dim * 4) == 0);
      // One step at a time: a step of whole blocks of 4 (the MLP's biases and weights alike).
      auto step = DecodeUplink(plain.StepPayload(plain.version()), dim);
      REQUIRE(step.ok());
      REQUIRE_FALSE(step->indices.empty());
      std::vector<uint32_t> per_block((dim + 3) / 4, 0);
      for (uint32_t i : step->indices) ++per_block[i / 4];
      for (uint32_t k = 0; k < per_block.size(); ++k) {
        if (per_block[k] != 0) CHECK(per_block[k] == std::min(4u, dim - 4 * k));
      }
      auto v = every.Apply(**plain.ModelPayloadFor(plain.version() - 1));
      REQUIRE(v.ok());
      CHECK(std::memcmp(every.params().data(), plain.global_model().data(), dim * 4) == 0);
    }
    // Seven missed steps at once, as a chain and as whatever the merging engine sends.
    auto a = with_chain.Apply(**plain.ModelPayloadFor(1));
    auto b = with_merged.Apply(**merged.ModelPayloadFor(1));
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(*a == 9);
    CHECK(*b == 9);
    CHECK(std::memcmp(with_chain.params().data(), plain.global_model().data(), dim * 4) == 0);
    CHECK(std::memcmp(with_merged.params().data(), plain.global_model().data(), dim * 4) == 0);
  }

  TEST_CASE("[prune] on the CNN: the agent rebuilds a smaller Cnn from a payload's channel pruning, and refuses another geometry") {
    CnnAgent agent;
    Rig& rig = agent.rig;
    const Model& model = *agent.model;
    const uint32_t dim = agent.dim;
    RoundEngine& engine = agent.engine;
    LocalState& state = agent.state;
    REQUIRE(state.Apply(**engine.ModelPayloadFor(0)).ok());
    const std::vector<float> held_v1 = state.params();
    const MlpShapeChange change = ChooseKeptCnnUnits(*CnnGeometryOf(model), PrunableSizes(model),
                                                     engine.global_model(), std::vector<uint32_t>{16, 32, 256});
    REQUIRE(engine.ApplyShapeChange(change).ok());
    REQUIRE(state.Apply(**engine.ModelPayloadFor(1)).ok());
    const auto* cnn = dynamic_cast<const Cnn*>(&state.model());
    REQUIRE(cnn != nullptr);
    CHECK(cnn->config().conv1_channels == 16);
    CHECK(cnn->config().conv2_channels == 32);
    CHECK(cnn->config().dense_units == 256);
    CHECK(state.dim() == change.NewParamCount());
    CHECK(state.params() == ApplyParamMap(ShapeChangeParamMap(change), held_v1));
    // A restarted agent: Register's shape, the unpruned Cnn, then a full payload prunes it.
    const std::vector<uint8_t> shape = EncodeShapeChange(engine.shape());
    LocalState restarted(rig.dir.Path("cnn2.bin"));
    REQUIRE(restarted.Adopt("cnn", static_cast<uint32_t>(change.NewParamCount()), agent.images, shape).ok());
    CHECK(restarted.dim() == dim);
    REQUIRE(restarted.Apply(**engine.ModelPayloadFor(0)).ok());
    CHECK(restarted.dim() == change.NewParamCount());
    // The same channels of a CNN with another kernel are not this agent's model: refused.
    MlpShapeChange other = engine.shape();
    other.cnn->kernel = 3;
    LocalState wrong(rig.dir.Path("cnn3.bin"));
    const Status st = wrong.Adopt("cnn", static_cast<uint32_t>(other.NewParamCount()), agent.images, EncodeShapeChange(other));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("parameters") != std::string::npos);
  }

  TEST_CASE("a payload whose shape change names a CNN of another geometry, or an MLP for a logistic regression, is refused before the agent's model or residual changes") {
    CnnAgent agent;
    Rig& rig = agent.rig;
    const Model& model = *agent.model;
    const uint32_t dim = agent.dim;
    RoundEngine& engine = agent.engine;
    LocalState& state = agent.state;
    const std::vector<uint8_t> v1_full = **engine.ModelPayloadFor(0);
    REQUIRE(state.Apply(v1_full).ok());
    // A residual on file, which a shape change the agent accepts would map and save.
    std::vector<float>& residual = state.Residual();
    for (size_t i = 0; i < residual.size(); ++i) residual[i] = 1e-3f * static_cast<float>(i % 97);
    state.SaveResidualFile();
    const std::vector<float> residual_before = residual;
    const MlpShapeChange change = ChooseKeptCnnUnits(*CnnGeometryOf(model), PrunableSizes(model),
                                                     engine.global_model(), std::vector<uint32_t>{16, 32, 256});
    REQUIRE(engine.ApplyShapeChange(change).ok());
    // The same channels of a CNN of 29x30 images: pooled twice, 7x7 as 28x28 is, so
    // as many parameters, and only the geometry tells the two apart.
    MlpShapeChange other = change;
    other.cnn = CnnGeometry{29, 30, 5};
    REQUIRE(other.OldParamCount() == change.OldParamCount());
    REQUIRE(other.NewParamCount() == change.NewParamCount());
    const std::vector<uint8_t> other_bytes = EncodeShapeChange(other);
    // The engine's own payloads with their shape piece replaced by `other`.
    auto forged = [&](const std::vector<uint8_t>& real) {
      std::vector<std::span<const uint8_t>> pieces;
      auto h = ParseModelPayload(real, dim, &pieces);
      REQUIRE(h.ok());
      bool replaced = false;
      for (auto& p : pieces) {
        if (IsShapeChange(p)) {
          p = other_bytes;
          replaced = true;
        }
      }
      REQUIRE(replaced);
      return EncodeModelPayload(*h, pieces);
    };
    const std::vector<uint8_t> full = forged(**engine.ModelPayloadFor(0));  // [shape, model]
    const std::vector<uint8_t> chain = forged(**engine.ModelPayloadFor(1));  // [shape change]
    for (const auto* bad : {&full, &chain}) {
      CAPTURE(bad == &full ? "full model" : "chain");
      REQUIRE(state.Apply(v1_full).ok());  // holding version 1, as the chain needs
      auto r = state.Apply(*bad);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code() == ErrorCode::kInvalidArgument);
      CHECK(r.error().message().find("29x30") != std::string::npos);
      CHECK(r.error().message().find("28x28") != std::string::npos);
      // The agent keeps its model (the unpruned 28x28 Cnn) and the residual on file.
      const auto* cnn = dynamic_cast<const Cnn*>(&state.model());
      REQUIRE(cnn != nullptr);
      CHECK(cnn->config().height == 28);
      CHECK(cnn->config().width == 28);
      CHECK(cnn->config().conv1_channels == PrunableSizes(model)[1]);
      CHECK(state.dim() == dim);
      CHECK(state.held_version() == 0);
      auto on_file = LoadResidual(rig.dir.Path("cnn.bin"), dim);
      REQUIRE(on_file.ok());
      CHECK(*on_file == residual_before);
    }
    // The engine's own payloads are still taken: the full model prunes the agent's Cnn.
    REQUIRE(state.Apply(**engine.ModelPayloadFor(0)).ok());
    CHECK(state.dim() == change.NewParamCount());

    // A logistic regression has no hidden layer: a full model with an MLP's
    // shape of as many parameters would have turned it into that MLP.
    LocalState logreg(rig.dir.Path("logreg.bin"));
    REQUIRE(logreg.Adopt("logreg", rig.Dim(), rig.local.data).ok());
    const MlpShapeChange mlp{{4, 8, 3}, {{0, 2, 5}}};  // pruned to 4-3-3: 27 parameters
    REQUIRE(mlp.NewParamCount() == 27);
    std::vector<float> weights(27, 0.5f);
    auto body = EncodeDownlink(weights, {}, DownlinkConfig{});
    REQUIRE(body.ok());
    const std::vector<uint8_t> shape = EncodeShapeChange(mlp);
    const std::span<const uint8_t> pieces[] = {shape, body->bytes};
    auto r = logreg.Apply(EncodeModelPayload({ModelPayloadKind::kFull, 0, 4, 27, 2}, pieces));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message().find("no hidden layers") != std::string::npos);
    CHECK(logreg.model().name() == std::string("logreg"));
    CHECK(logreg.dim() == rig.Dim());
  }

  TEST_CASE("a task on the seed-built version 1 is trained and accepted by the round engine") {
    Rig rig;
    const uint64_t seed = 5;
    std::vector<float> v1(rig.Dim());
    (*MakeModel("logreg", 4, 3))->InitParams(v1, StreamSeed(seed, SeedStream::kInit));
    RoundEngine engine(v1, EngineConfig{});
    const uint64_t selected[] = {7};
    REQUIRE(engine.OpenRound(1, selected).ok());
    auto payload = engine.ModelPayloadFor(1);  // the empty chain of an up-to-date client
    REQUIRE(payload.ok());

    TaskLoop loop(rig.env, rig.state);
    loop.OnEnvelope(RegisterEnvelope(rig.Dim(), true, seed));
    CHECK(loop.OnEnvelope(TaskEnvelope(1, 1)).send.empty());
    const LoopStep step = loop.OnEnvelope(ModelEnvelope(1, **payload));
    CHECK(step.decision.kind == Kind::kContinue);
    REQUIRE(step.send.size() == 1);
    REQUIRE(step.send[0].has_update());
    const v1::Update& u = step.send[0].update();
    CHECK(u.round() == 1);
    CHECK(u.base_version() == 1);
    const auto* bytes = reinterpret_cast<const uint8_t*>(u.update().data());
    CHECK(engine.Ingest(1, 7, u.base_version(), std::span(bytes, u.update().size()), 24).ok());
  }

  TEST_CASE("widths.rolling: a narrow agent trains the Task round's window, which the engine places with that round's map") {
    Rig rig;
    const uint64_t seed = 5;
    auto model = MakeModel("mlp", 4, 3);
    REQUIRE(model.ok());
    const auto* mlp = dynamic_cast<const Mlp*>(model->get());
    REQUIRE(mlp != nullptr);
    const std::vector<uint32_t> sizes(mlp->layer_sizes().begin(), mlp->layer_sizes().end());
    std::vector<float> v1(mlp->num_params());
    mlp->InitParams(v1, StreamSeed(seed, SeedStream::kInit));
    EngineConfig ec;
    ec.averaging = Averaging::kSupport;
    RoundEngine engine(v1, ec);
    const uint64_t selected[] = {7};
    REQUIRE(engine.OpenRound(1, selected).ok());
    auto payload = engine.ModelPayloadFor(1);
    REQUIRE(payload.ok());

    TaskLoop loop(rig.env, rig.state);
    v1::Envelope reg = RegisterEnvelope(static_cast<uint32_t>(v1.size()), true, seed);
    reg.mutable_register_()->set_model("mlp");
    reg.mutable_register_()->set_width(0.5);
    reg.mutable_register_()->set_rolling_width(true);
    loop.OnEnvelope(reg);
    CHECK(loop.OnEnvelope(TaskEnvelope(1, 1)).send.empty());
    const LoopStep step = loop.OnEnvelope(ModelEnvelope(1, **payload));
    REQUIRE(step.send.size() == 1);
    REQUIRE(step.send[0].has_update());
    const v1::Update& u = step.send[0].update();
    // Round 1's window starts at unit 1 of each hidden layer; the first units' slice starts at 0.
    const NestedNetwork window = MakeNestedNetwork(sizes, 0.5, 1);
    const NestedNetwork first = MakeNestedNetwork(sizes, 0.5);
    const auto* bytes = reinterpret_cast<const uint8_t*>(u.update().data());
    REQUIRE(engine.Ingest(1, 7, u.base_version(), std::span(bytes, u.update().size()), 24, nullptr, window.map).ok());
    REQUIRE(engine.CloseRound(1).ok());
    // The engine, placing the update with round 1's map, moved only the window's coordinates.
    const std::set<uint32_t> in_window(window.map.begin(), window.map.end());
    size_t moved = 0;
    for (uint32_t j = 0; j < v1.size(); ++j) {
      if (engine.global_model()[j] == v1[j]) continue;
      ++moved;
      CHECK(in_window.contains(j));
    }
    CHECK(moved > 0);
    // The agent's update is the window's sub-network trained from its slice: the same bytes as that task run
    // here, and not those of the first units' slice (HeteroFL's, what it would send without rolling_width).
    TrainConfig tc;
    tc.batch_size = 8;
    tc.seed = RoundClientSeed(seed, SeedStream::kTrain, 1, 7);
    auto ws = window.model->MakeWorkspace();
    std::vector<float> scratch;
    std::vector<float> resid(v1.size(), 0.0f);
    auto ref = RunNestedClientTask(window, v1, rig.local.data, rig.local.indices, tc, UplinkConfig{.density = 0.3},
                                   resid, *ws, scratch);
    REQUIRE(ref.ok());
    CHECK(std::string(ref->update.begin(), ref->update.end()) == u.update());
    std::vector<float> resid_first(v1.size(), 0.0f);
    auto ws_first = first.model->MakeWorkspace();
    auto ref_first = RunNestedClientTask(first, v1, rig.local.data, rig.local.indices, tc, UplinkConfig{.density = 0.3},
                                         resid_first, *ws_first, scratch);
    REQUIRE(ref_first.ok());
    CHECK(std::string(ref_first->update.begin(), ref_first->update.end()) != u.update());
  }

// Three task loops (ids 7, 8, 9) through one secure round against the
// coordinator's side, the engine and SecureRoundServer the round driver uses.
// `keys` (empty: the loops' RAND_bytes default) injects each loop's noise key.
struct SecureLoopsRun {
  std::vector<float> v1;
  EngineConfig ec;
  std::vector<uint64_t> ids = {7, 8, 9};
  std::vector<uint32_t> support;
  std::vector<std::unique_ptr<Rig>> rigs;
  privacy::SecureSum sum;
  std::vector<uint32_t> guide_blocks;  // secure.guided: the task's guide (blocks of 2 coordinates); empty: none
};

void RunSecureLoops(SecureLoopsRun& run, uint64_t seed, const std::vector<privacy::NoiseKey>& keys) {
  run.v1.resize(Rig().Dim());
  (*MakeModel("logreg", 4, 3))->InitParams(run.v1, StreamSeed(seed, SeedStream::kInit));
  RoundEngine engine(run.v1, run.ec);
  const std::vector<uint64_t>& ids = run.ids;
  REQUIRE(engine.OpenRound(1, ids).ok());
  auto payload = engine.ModelPayloadFor(1);
  REQUIRE(payload.ok());
  auto support = engine.SecureSupport(1);
  REQUIRE(support.ok());
  std::vector<uint8_t> guide_bytes;
  if (!run.guide_blocks.empty()) {
    // The support the guide fixes, which the clients must quantize on.
    const auto dim = static_cast<uint32_t>(run.v1.size());
    guide_bytes = *EncodeSupportGuide(run.guide_blocks, dim, 2);
    support = privacy::RoundSupport(run.ec.secure, 1, dim, run.ec.uplink_density,
                                    ExpandGuideBlocks(run.guide_blocks, dim, 2));
    REQUIRE(support.ok());
    CHECK(*support != *engine.SecureSupport(1));
  }
  run.support = *support;
  // The engine's ring: under distributed DP, with the clip and noise it planned.
  const privacy::SecurePipelineConfig& sc = engine.secure_config();
  auto plan = privacy::PlanSecureRoundFor(sc, seed, 99, 1, ids, static_cast<uint32_t>(support->size()));
  REQUIRE(plan.ok());
  auto server = privacy::SecureRoundServer::Open(*plan);
  REQUIRE(server.ok());

  std::vector<std::unique_ptr<TaskLoop>> loops;
  std::map<uint64_t, size_t> at;
  std::vector<v1::Envelope> outbox;  // what the loops sent, in order
  auto deliver = [&](size_t i, const v1::Envelope& env) {
    LoopStep step = loops[i]->OnEnvelope(env);
    CHECK(step.decision.kind == Kind::kContinue);
    for (auto& e : step.send) outbox.push_back(std::move(e));
  };
  for (size_t i = 0; i < ids.size(); ++i) {
    run.rigs.push_back(std::make_unique<Rig>());
    Rig& rig = *run.rigs[i];
    rig.cfg.state_dir = rig.dir.Path("state");
    if (!keys.empty()) {
      const privacy::NoiseKey key = keys[i];
      rig.env.noise_key = [key]() -> Result<privacy::NoiseKey> { return key; };
    }
    loops.push_back(std::make_unique<TaskLoop>(rig.env, rig.state));
    at[ids[i]] = i;
    v1::Envelope reg = RegisterEnvelope(rig.Dim(), true, seed);
    reg.mutable_register_()->set_client_id(ids[i]);
    deliver(i, reg);
    v1::Envelope task = TaskEnvelope(1, 1);
    ToWire(SecureTaskPlan{.round = plan->config, .position = plan->positions[i], .ring = sc.ring,
                          .support_seed = sc.support_seed, .density = run.ec.uplink_density, .debug_dump = true,
                          .support_guide = guide_bytes},
           task.mutable_task()->mutable_secagg());
    deliver(i, task);
    deliver(i, ModelEnvelope(1, **payload));
  }
  // Each stage: the loops' messages to the server, the server's answers back.
  for (uint32_t stage = 1; stage <= 5; ++stage) {
    REQUIRE(outbox.size() == ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      REQUIRE(outbox[i].has_secagg());
      const v1::SecAgg& m = outbox[i].secagg();
      CHECK(m.stage() == stage);
      const auto* b = reinterpret_cast<const uint8_t*>(m.body().data());
      REQUIRE(server->Receive(ids[i], m.round(), m.stage(), std::span(b, m.body().size())).ok());
      if (stage == 3) CHECK(m.ledger().flops() > 0);
    }
    outbox.clear();
    if (stage == 5) break;
    CHECK(server->StageComplete());
    auto next = server->CloseStage();
    REQUIRE(next.ok());
    for (auto& [id, body] : *next) {
      v1::Envelope env;
      env.mutable_secagg()->set_round(1);
      env.mutable_secagg()->set_stage(stage + 1);
      env.mutable_secagg()->set_body(reinterpret_cast<const char*>(body.data()), body.size());
      deliver(at.at(id), env);
    }
  }
  auto sum = server->Finish();
  REQUIRE(sum.ok());
  CHECK(sum->survivors == ids);
  run.sum = *sum;
  // (The engine's own support is not the guided one here: it chose no guide.)
  if (run.guide_blocks.empty()) CHECK(engine.IngestSecureSum(1, sum->survivors, sum->sum).ok());
  run.ec.secure = sc;  // what the clients were told
}

// Client i's ring input by the plain path: TrainClientDelta and
// SecureClientInput from a zero residual (the residual it leaves in `residual`).
std::vector<uint64_t> ReferenceInput(const SecureLoopsRun& run, size_t i, uint64_t seed, const RingQuantConfig& ring,
                                     const privacy::NoiseKey* key, std::vector<float>& residual) {
  auto model = MakeModel("logreg", 4, 3);
  REQUIRE(model.ok());
  auto ws = (*model)->MakeWorkspace();
  TrainConfig tc = FromWire(RegisterEnvelope(run.rigs[i]->Dim(), true, seed).register_().train());
  tc.seed = RoundClientSeed(seed, SeedStream::kTrain, 1, run.ids[i]);
  std::vector<float> delta;
  REQUIRE(TrainClientDelta(**model, run.v1, run.rigs[i]->local.data, run.rigs[i]->local.indices, tc, *ws, delta).ok());
  residual.assign(run.v1.size(), 0.0f);
  auto input = privacy::SecureClientInput(delta, run.support, ring, seed, 1, run.ids[i], residual, key);
  REQUIRE(input.ok());
  return *input;
}

std::vector<uint64_t> ReadRing(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint64_t> v;
  for (;;) {
    uint64_t x = 0;
    for (int b = 0; b < 8; ++b) x |= static_cast<uint64_t>(static_cast<uint8_t>(in.get())) << (8 * b);
    if (!in) break;
    v.push_back(x);
  }
  return v;
}

  TEST_CASE("a secure task whose payload is a merged piece of format version 3: the agent decodes the task's guide first and holds the steps' model bit for bit") {
    const uint64_t seed = 31;
    const std::vector<uint32_t> blocks = {1, 4, 6};  // coordinates 2-3, 8-9, 12-13 (blocks of 2)
    for (bool same_guide : {true, false}) {
      CAPTURE(same_guide);
      Rig rig;
      TaskLoop loop(rig.env, rig.state);
      REQUIRE(loop.OnEnvelope(RegisterEnvelope(rig.Dim(), true, seed)).decision.kind == Kind::kContinue);
      REQUIRE(rig.state.held_version() == 1);
      const uint32_t dim = rig.Dim();
      const std::vector<float> v1 = rig.state.params();
      // Three ternary steps, mostly on the guide; the plain reference adds them in order.
      std::vector<SparseUpdate> steps = {{dim, {2, 3, 9, 12}, {0.25f, -0.25f, 0.25f, 0.25f}},
                                         {dim, {2, 5, 8, 9, 13}, {-0.5f, 0.5f, 0.5f, -0.5f, 0.5f}},
                                         {dim, {3, 12, 13}, {0.125f, 0.125f, -0.125f}}};
      std::vector<float> want = v1;
      for (const SparseUpdate& u : steps) {
        for (size_t j = 0; j < u.indices.size(); ++j) want[u.indices[j]] += u.values[j];
      }
      const std::vector<uint32_t> guide = ExpandGuideBlocks(blocks, dim, 2);
      auto piece = EncodeMergedSteps(steps, dim, 3, guide);
      REQUIRE(piece.ok());
      const std::span<const uint8_t> one(*piece);
      const std::vector<uint8_t> payload =
          EncodeModelPayload({ModelPayloadKind::kMerged, 1, 4, dim, 1}, std::span(&one, 1));
      // The task's guide: the one the piece was coded against, or another.
      const std::vector<uint32_t> sent_blocks = same_guide ? blocks : std::vector<uint32_t>{1, 4};
      privacy::SecurePipelineConfig sc;
      sc.ring = {.bits = 16, .clip = 0.5f, .max_summands = 3};
      sc.support_seed = 5;
      auto plan = privacy::PlanSecureRoundFor(sc, seed, 99, 1, std::vector<uint64_t>{7, 8, 9}, 8);
      REQUIRE(plan.ok());
      v1::Envelope task = TaskEnvelope(1, 4);
      ToWire(SecureTaskPlan{.round = plan->config, .position = plan->positions[0], .ring = sc.ring,
                            .support_seed = sc.support_seed, .density = 0.5,
                            .support_guide = *EncodeSupportGuide(sent_blocks, dim, 2)},
             task.mutable_task()->mutable_secagg());
      REQUIRE(loop.OnEnvelope(task).send.empty());
      const LoopStep step = loop.OnEnvelope(ModelEnvelope(1, payload));
      REQUIRE(step.send.size() == 1);
      if (same_guide) {
        CHECK(step.send[0].has_secagg());  // stage 1: its keys
        CHECK(rig.state.held_version() == 4);
        CHECK(std::memcmp(rig.state.params().data(), want.data(), 4 * dim) == 0);
      } else {
        REQUIRE(step.send[0].has_error());
        CHECK(step.send[0].error().message().find("another guide") != std::string::npos);
        CHECK(rig.state.held_version() == 0);  // the copy is dropped, never misapplied
      }
    }
  }

  TEST_CASE("a secure task whose payload is a merged piece of format version 4: the agent rebuilds each missed round's support from its kept steps and holds the server's model bit for bit") {
    const uint32_t dim = Rig().Dim();
    EngineConfig ec;
    ec.pipeline = Pipeline::kSecure;
    ec.uplink_density = 0.6;
    ec.merge_chains = true;
    ec.merge_version = 4;
    ec.full_model.bits = 0;
    ec.broadcast = {.dense = false, .density = 0.4, .values = ValueCoding::kTernary};
    ec.secure.ring = RingQuantConfig{.bits = 16, .clip = 0.1f, .max_summands = 3};
    ec.secure.support_seed = 42;
    ec.secure.guided = 0.3;
    ec.secure.guide_rounds = 3;
    ec.secure.guide_block = 1;
    ec.secure.derive_guide = true;
    std::vector<float> v1(dim);
    (*MakeModel("logreg", 4, 3))->InitParams(v1, 3);
    RoundEngine engine(v1, ec);
    const std::vector<uint64_t> ids = {1, 2, 3};
    Rng rng(5);
    auto run_round = [&](uint32_t round) {
      REQUIRE(engine.OpenRound(round, ids).ok());
      auto support = engine.SecureSupport(round);
      REQUIRE(support.ok());
      std::vector<uint64_t> sum(support->size());
      for (auto& x : sum) x = rng.NextU64() & 0xffff;
      REQUIRE(engine.IngestSecureSum(round, ids, sum).ok());
      REQUIRE(engine.CloseRound(1).ok());
    };
    // Two agents up to date at version 5: one keeping 3 steps (the guide's), one keeping 2.
    Rig rig, short_rig;
    rig.state.KeepSteps(3);
    short_rig.state.KeepSteps(2);
    TaskLoop loop(rig.env, rig.state), short_loop(short_rig.env, short_rig.state);
    for (TaskLoop* l : {&loop, &short_loop}) {
      REQUIRE(l->OnEnvelope(RegisterEnvelope(dim, false, 31)).decision.kind == Kind::kContinue);
    }
    for (Rig* r : {&rig, &short_rig}) REQUIRE(r->state.Apply(**engine.ModelPayloadFor(0)).ok());
    for (uint32_t round = 1; round <= 4; ++round) {
      run_round(round);
      for (Rig* r : {&rig, &short_rig}) REQUIRE(r->state.Apply(**engine.ModelPayloadFor(r->state.held_version())).ok());
    }
    const uint32_t held = rig.state.held_version();
    REQUIRE(held == 5);
    REQUIRE(rig.state.history().from() == 2);
    for (uint32_t round = 5; round <= 9; ++round) run_round(round);  // both miss five rounds
    const uint32_t task_round = 10;
    REQUIRE(engine.OpenRound(task_round, ids).ok());
    REQUIRE(engine.MergeV4For(held, rig.state.history().from()));
    auto payload = engine.ModelPayloadFor(held, rig.state.history().from());
    REQUIRE(payload.ok());
    std::vector<std::span<const uint8_t>> pieces;
    auto h = ParseModelPayload(**payload, dim, &pieces);
    REQUIRE(h.ok());
    REQUIRE(h->kind == ModelPayloadKind::kMerged);
    REQUIRE(pieces[0][5] == 4);
    auto plan = privacy::PlanSecureRoundFor(ec.secure, 31, 99, task_round, ids, 8);
    REQUIRE(plan.ok());
    auto send_task = [&](TaskLoop& agent) {
      v1::Envelope task = TaskEnvelope(task_round, engine.version());
      ToWire(SecureTaskPlan{.round = plan->config, .position = plan->positions[0], .ring = ec.secure.ring,
                            .support_seed = ec.secure.support_seed, .density = ec.uplink_density,
                            .guide_steps = engine.SecureGuideSteps(), .guide_block = ec.secure.guide_block,
                            .guided = ec.secure.guided, .guide_decay = ec.secure.guide_decay},
             task.mutable_task()->mutable_secagg());
      REQUIRE(agent.OnEnvelope(task).send.empty());
      return agent.OnEnvelope(ModelEnvelope(task_round, **payload));
    };
    const LoopStep step = send_task(loop);
    REQUIRE(step.send.size() == 1);
    CHECK(step.send[0].has_secagg());  // stage 1: its keys
    CHECK(rig.state.held_version() == engine.version());
    CHECK(std::memcmp(rig.state.params().data(), engine.global_model().data(), 4 * dim) == 0);
    CHECK(rig.state.history().version() == engine.version());  // the decoded steps kept
    // The agent keeping two steps rebuilds other supports: refused, its copy dropped, never misapplied.
    const LoopStep refused = send_task(short_loop);
    REQUIRE(refused.send.size() == 1);
    REQUIRE(refused.send[0].has_error());
    CHECK(short_rig.state.held_version() == 0);
  }

  TEST_CASE("secure tasks: three task loops answer the SecAgg+ stages through the core's server, whose sum is exactly their ring inputs'") {
    // The reference is the plain loop: TrainClientDelta and SecureClientInput
    // from a zero residual, summed mod 2^bits. The same with a support guide
    // (secure.guided) in the task: the loops must quantize on the support it fixes.
    for (const std::vector<uint32_t>& guide_blocks : {std::vector<uint32_t>{}, std::vector<uint32_t>{0, 2}}) {
      CAPTURE(guide_blocks.size());
      const uint64_t seed = 11;
      SecureLoopsRun run;
      run.ec.pipeline = Pipeline::kSecure;
      run.ec.uplink_density = 0.3;
      run.ec.secure.ring = RingQuantConfig{.bits = 16, .clip = 0.1f, .max_summands = 3};
      run.ec.secure.support_seed = 42;
      run.guide_blocks = guide_blocks;  // blocks of 2 coordinates, as the coordinator sends them
      RunSecureLoops(run, seed, {});
      const uint64_t mask = (uint64_t{1} << 16) - 1;
      std::vector<uint64_t> expect(run.support.size(), 0);
      for (size_t i = 0; i < run.ids.size(); ++i) {
        std::vector<float> residual;
        const std::vector<uint64_t> input = ReferenceInput(run, i, seed, run.ec.secure.ring, nullptr, residual);
        for (size_t j = 0; j < input.size(); ++j) expect[j] = (expect[j] + input[j]) & mask;
        CHECK(run.rigs[i]->state.Residual() == residual);  // error feedback kept in the local state
      }
      CHECK(run.sum.sum == expect);
    }
  }

  TEST_CASE("distributed DP tasks: the ring input is the plain reference's levels plus Skellam noise from the device's own key, different on every device") {
    const uint64_t seed = 11;
    auto config = [] {
      EngineConfig ec;
      ec.pipeline = Pipeline::kSecure;
      ec.uplink_density = 0.3;
      ec.secure.ring = RingQuantConfig{.bits = 16, .clip = 0.1f, .max_summands = 3};
      ec.secure.support_seed = 42;
      ec.dp.mode = privacy::DpMode::kDistributed;
      ec.dp.clip = 0.05;
      ec.dp.noise_multiplier = 1.0;
      return ec;
    };
    const uint64_t mask = (uint64_t{1} << 16) - 1;
    // Known keys: the sum is exactly the plain reference's noisy inputs, the
    // noise (noisy minus noiseless levels) non-zero; the residual never sees it.
    {
      SecureLoopsRun run;
      run.ec = config();
      std::vector<privacy::NoiseKey> keys(3);
      for (size_t i = 0; i < 3; ++i) keys[i].fill(static_cast<uint8_t>(i + 1));
      RunSecureLoops(run, seed, keys);
      const RingQuantConfig& ring = run.ec.secure.ring;
      REQUIRE(ring.noise_mu > 0);
      CHECK(ring.l2_clip == 0.05);
      RingQuantConfig quiet = ring;
      quiet.noise_mu = 0;
      std::vector<uint64_t> expect(run.support.size(), 0);
      for (size_t i = 0; i < run.ids.size(); ++i) {
        std::vector<float> residual, quiet_residual;
        const std::vector<uint64_t> noisy = ReferenceInput(run, i, seed, ring, &keys[i], residual);
        const std::vector<uint64_t> plain = ReferenceInput(run, i, seed, quiet, nullptr, quiet_residual);
        CHECK(residual == quiet_residual);
        CHECK(run.rigs[i]->state.Residual() == residual);
        CHECK(ReadRing(run.rigs[i]->cfg.state_dir + "/secagg_input_r1.bin") == noisy);
        CHECK(noisy != plain);
        for (size_t j = 0; j < noisy.size(); ++j) expect[j] = (expect[j] + noisy[j]) & mask;
      }
      CHECK(run.sum.sum == expect);
    }
    // The agents' own RAND_bytes keys: each input is the noiseless reference
    // plus noise, non-zero and different on every device.
    SecureLoopsRun run;
    run.ec = config();
    RunSecureLoops(run, seed, {});
    RingQuantConfig quiet = run.ec.secure.ring;
    quiet.noise_mu = 0;
    std::vector<std::vector<uint64_t>> noise;
    std::vector<uint64_t> expect(run.support.size(), 0);
    for (size_t i = 0; i < run.ids.size(); ++i) {
      std::vector<float> residual;
      const std::vector<uint64_t> plain = ReferenceInput(run, i, seed, quiet, nullptr, residual);
      const std::vector<uint64_t> sent = ReadRing(run.rigs[i]->cfg.state_dir + "/secagg_input_r1.bin");
      REQUIRE(sent.size() == plain.size());
      std::vector<uint64_t> n(sent.size());
      for (size_t j = 0; j < sent.size(); ++j) {
        n[j] = (sent[j] - plain[j]) & mask;
        expect[j] = (expect[j] + sent[j]) & mask;
      }
      CHECK(n != std::vector<uint64_t>(n.size(), 0));
      noise.push_back(std::move(n));
    }
    CHECK(noise[0] != noise[1]);
    CHECK(noise[1] != noise[2]);
    CHECK(run.sum.sum == expect);
  }

  TEST_CASE("a run whose value coding the client does not know is refused at Register, not trained as ternary") {
    Rig rig;
    TaskLoop loop(rig.env, rig.state);
    const LoopStep step = loop.OnEnvelope(RegisterEnvelope(rig.Dim(), true, 3, static_cast<v1::CodecConfig::Values>(9)));
    CHECK(step.decision.kind == Kind::kStop);
    REQUIRE(step.decision.error.has_value());
    CHECK(step.decision.error->message().find("9") != std::string::npos);
    CHECK_FALSE(loop.registered());
    // Without a Register there is no task configuration: a task is refused, not trained on defaults.
    loop.OnEnvelope(TaskEnvelope(1, 1));
    const LoopStep task = loop.OnEnvelope(ModelEnvelope(1, {}));
    REQUIRE(task.send.size() == 1);
    CHECK(task.send[0].has_error());
  }

  TEST_CASE("a device policy that declines sends DECLINED and keeps serving") {
    Rig rig;
    rig.accept = false;
    TaskLoop loop(rig.env, rig.state);
    loop.OnEnvelope(RegisterEnvelope(rig.Dim(), true, 1));
    loop.OnEnvelope(TaskEnvelope(4, 1));
    const LoopStep step = loop.OnEnvelope(ModelEnvelope(4, {}));
    REQUIRE(step.send.size() == 1);
    CHECK(step.send[0].error().code() == v1::Error::DECLINED);
    CHECK(step.send[0].error().round() == 4);
    CHECK(step.decision.kind == Kind::kContinue);
  }

  TEST_CASE("PROTOCOL_VERSION stops the client with its own exit code instead of retrying") {
    Rig rig;
    TaskLoop loop(rig.env, rig.state);
    const LoopStep step = loop.OnEnvelope(ProtocolVersionEnvelope(1));
    REQUIRE(step.decision.kind == Kind::kStop);
    REQUIRE(step.decision.error.has_value());
    CHECK(step.decision.error->message().find("PROTOCOL_VERSION") != std::string::npos);
    CHECK(ExitCodeFor(*step.decision.error) == kExitProtocolVersion);

    // A coordinator whose Envelopes this client cannot parse: the same stop.
    const LoopDecision d = loop.OnDecodeError(InvalidArgumentError("protocol version 3"), 3u);
    REQUIRE(d.kind == Kind::kStop);
    CHECK(d.error->message().find("PROTOCOL_VERSION") != std::string::npos);
    CHECK(ExitCodeFor(*d.error) == kExitProtocolVersion);
    // Malformed bytes are not a protocol mismatch: reconnect, counted as a failure.
    const LoopDecision junk = loop.OnDecodeError(InvalidArgumentError("not an Envelope"), std::nullopt);
    CHECK(junk.kind == Kind::kReconnect);
    CHECK(junk.error.has_value());
  }

  TEST_CASE("UNAUTHENTICATED stops the client, from an Error or from the TLS layer") {
    Rig rig;
    TaskLoop loop(rig.env, rig.state);
    const LoopStep step =
        loop.OnEnvelope(ErrorFromCoordinator(v1::Error::UNAUTHENTICATED, "Hello names client 'x'"));
    REQUIRE(step.decision.kind == Kind::kStop);
    CHECK(step.decision.error->code() == ErrorCode::kUnauthenticated);
    CHECK(step.decision.error->message().find("UNAUTHENTICATED") != std::string::npos);
    CHECK(ExitCodeFor(*step.decision.error) == kExitUnauthenticated);

    const LoopDecision tls = loop.OnConnectionLost(Error(ErrorCode::kUnauthenticated, "tlsv1 alert unknown ca"));
    REQUIRE(tls.kind == Kind::kStop);
    CHECK(ExitCodeFor(*tls.error) == kExitUnauthenticated);
  }

  TEST_CASE("PERMISSION_DENIED stops the client as before, with exit code 1") {
    Rig rig;
    TaskLoop loop(rig.env, rig.state);
    const LoopStep step = loop.OnEnvelope(ErrorFromCoordinator(v1::Error::PERMISSION_DENIED, "identity dev-1 is revoked"));
    REQUIRE(step.decision.kind == Kind::kStop);
    CHECK(step.decision.error->message().find("revoked") != std::string::npos);
    CHECK(ExitCodeFor(*step.decision.error) == kExitPermissionDenied);
    CHECK(kExitPermissionDenied == 1);
  }

  TEST_CASE("UNAVAILABLE and the connection cap reconnect with backoff") {
    Rig rig;
    TaskLoop loop(rig.env, rig.state);
    LoopStep step = loop.OnEnvelope(ErrorFromCoordinator(v1::Error::RESOURCE_EXHAUSTED, "connection cap of 2"));
    CHECK(step.decision.kind == Kind::kReconnect);
    CHECK(step.decision.error.has_value());  // counts toward connection.max_attempts
    loop.OnEnvelope(RegisterEnvelope(rig.Dim(), false, 0));
    step = loop.OnEnvelope(ErrorFromCoordinator(v1::Error::UNAVAILABLE, "try later"));
    CHECK(step.decision.kind == Kind::kReconnect);
    REQUIRE(step.decision.error.has_value());
    CHECK(step.decision.error->code() == ErrorCode::kUnavailable);
    CHECK(ExitCodeFor(UnavailableError("giving up after 3 attempts")) == kExitGaveUp);
    // A connection that a registered client loses is not a failed attempt.
    const LoopDecision lost = loop.OnConnectionLost(UnavailableError("the coordinator closed the connection"));
    CHECK(lost.kind == Kind::kReconnect);
    CHECK_FALSE(lost.error.has_value());
  }

  TEST_CASE("an update refused as stale or duplicate leaves a registered client serving") {
    Rig rig;
    TaskLoop loop(rig.env, rig.state);
    loop.OnEnvelope(RegisterEnvelope(rig.Dim(), true, 1));
    for (RejectReason r : {RejectReason::kStaleRound, RejectReason::kDuplicate, RejectReason::kNotSelected}) {
      const LoopStep step = loop.OnEnvelope(ErrorEnvelope(FailedPreconditionError("late"), 3, r));
      CHECK(step.decision.kind == Kind::kContinue);
      CHECK(step.send.empty());
    }
    const LoopStep bad = loop.OnEnvelope(ErrorEnvelope(InvalidArgumentError("NaN"), 3, RejectReason::kNonFinite));
    CHECK(bad.decision.kind == Kind::kContinue);
    CHECK(rig.state.held_version() == 1);
    // Heartbeats are answered in the meantime.
    v1::Envelope hb;
    hb.mutable_heartbeat()->set_sequence(41);
    const LoopStep reply = loop.OnEnvelope(hb);
    REQUIRE(reply.send.size() == 1);
    CHECK(reply.send[0].heartbeat().reply());
    CHECK(reply.send[0].heartbeat().sequence() == 41);
  }

  TEST_CASE("Bye ends the session: the run's end stops the client, anything else reconnects") {
    Rig rig;
    TaskLoop loop(rig.env, rig.state);
    v1::Envelope bye;
    bye.mutable_bye()->set_reason("run complete");
    LoopStep step = loop.OnEnvelope(bye);
    CHECK(step.decision.kind == Kind::kStop);
    CHECK_FALSE(step.decision.error.has_value());
    CHECK(ExitCodeFor(OkStatus()) == kExitOk);
    bye.mutable_bye()->set_reason("coordinator stopping");
    step = loop.OnEnvelope(bye);
    CHECK(step.decision.kind == Kind::kReconnect);
    CHECK_FALSE(step.decision.error.has_value());
  }
}

}  // namespace frugal::client
