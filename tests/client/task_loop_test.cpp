// The agent's I/O-free task loop, driven with hand-made Envelopes: version 1
// built from the run's seed, a task served end to end against the round
// engine, and the policy on the coordinator's error codes (stop, reconnect
// with backoff, or keep serving), with the process exit code each stop gives,
// and secure tasks answered stage by stage.
#include "frugal/client/task_loop.h"

#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/task_loop_rig.h"
#include "data/temp_dir.h"
#include "frugal/client/agent.h"
#include "frugal/codec/shared_support.h"
#include "frugal/core/streams.h"
#include "frugal/privacy/secure_round.h"
#include "frugal/proto/convert.h"
#include "frugal/round/client_task.h"
#include "frugal/proto/frame.h"
#include "frugal/round/engine.h"
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

  TEST_CASE("secure tasks: three task loops answer the SecAgg+ stages through the core's server, whose sum is exactly their ring inputs'") {
    // Coordinator side: the engine and SecureRoundServer the round driver uses;
    // client side: three task loops. The reference is the plain loop below:
    // TrainClientDelta and SecureClientInput from a zero residual, summed mod 2^bits.
    // The same with a support guide (secure.guided) in the task.
    for (const bool guided : {false, true}) {
      CAPTURE(guided);
      const uint64_t seed = 11;
      std::vector<float> v1(Rig().Dim());
      (*MakeModel("logreg", 4, 3))->InitParams(v1, StreamSeed(seed, SeedStream::kInit));
      EngineConfig ec;
      ec.pipeline = Pipeline::kSecure;
      ec.uplink_density = 0.3;
      ec.secure.ring = RingQuantConfig{.bits = 16, .clip = 0.1f, .max_summands = 3};
      ec.secure.support_seed = 42;
      RoundEngine engine(v1, ec);
      const std::vector<uint64_t> ids = {7, 8, 9};
      REQUIRE(engine.OpenRound(1, ids).ok());
      auto payload = engine.ModelPayloadFor(1);
      REQUIRE(payload.ok());
      auto support = engine.SecureSupport(1);
      REQUIRE(support.ok());
      std::vector<uint8_t> guide_bytes;
      if (guided) {
        // secure.guided: a guide as the coordinator sends it (blocks 0 and 2 of
        // 2 coordinates); the clients must quantize on the support it fixes.
        const auto dim = static_cast<uint32_t>(v1.size());
        const std::vector<uint32_t> blocks = {0, 2};
        guide_bytes = *EncodeSupportGuide(blocks, dim, 2);
        support = privacy::RoundSupport(ec.secure, 1, dim, ec.uplink_density, ExpandGuideBlocks(blocks, dim, 2));
        REQUIRE(support.ok());
        CHECK(*support != *engine.SecureSupport(1));
      }
      auto plan = privacy::PlanSecureRoundFor(ec.secure, seed, 99, 1, ids, static_cast<uint32_t>(support->size()));
      REQUIRE(plan.ok());
      auto server = privacy::SecureRoundServer::Open(*plan);
      REQUIRE(server.ok());

      std::vector<std::unique_ptr<Rig>> rigs;
      std::vector<std::unique_ptr<TaskLoop>> loops;
      std::map<uint64_t, size_t> at;
      std::vector<v1::Envelope> outbox;  // what the loops sent, in order
      auto deliver = [&](size_t i, const v1::Envelope& env) {
        LoopStep step = loops[i]->OnEnvelope(env);
        CHECK(step.decision.kind == Kind::kContinue);
        for (auto& e : step.send) outbox.push_back(std::move(e));
      };
      for (size_t i = 0; i < ids.size(); ++i) {
        rigs.push_back(std::make_unique<Rig>());
        loops.push_back(std::make_unique<TaskLoop>(rigs[i]->env, rigs[i]->state));
        at[ids[i]] = i;
        v1::Envelope reg = RegisterEnvelope(rigs[i]->Dim(), true, seed);
        reg.mutable_register_()->set_client_id(ids[i]);
        deliver(i, reg);
        v1::Envelope task = TaskEnvelope(1, 1);
        ToWire(SecureTaskPlan{.round = plan->config, .position = plan->positions[i], .ring = ec.secure.ring,
                              .support_seed = ec.secure.support_seed, .density = ec.uplink_density,
                              .support_guide = guide_bytes},
               task.mutable_task()->mutable_secagg());
        deliver(i, task);
        deliver(i, ModelEnvelope(1, **payload));
      }
      // Each stage: the loops' messages to the server, the server's answers back.
      for (uint32_t stage = 1; stage <= 4; ++stage) {
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
        if (stage == 4) break;
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

      auto model = MakeModel("logreg", 4, 3);
      REQUIRE(model.ok());
      auto ws = (*model)->MakeWorkspace();
      const uint64_t mask = (uint64_t{1} << 16) - 1;
      std::vector<uint64_t> expect(support->size(), 0);
      for (size_t i = 0; i < ids.size(); ++i) {
        TrainConfig tc = FromWire(RegisterEnvelope(rigs[i]->Dim(), true, seed).register_().train());
        tc.seed = RoundClientSeed(seed, SeedStream::kTrain, 1, ids[i]);
        std::vector<float> delta;
        REQUIRE(TrainClientDelta(**model, v1, rigs[i]->local.data, rigs[i]->local.indices, tc, *ws, delta).ok());
        std::vector<float> residual(v1.size(), 0.0f);
        auto input = privacy::SecureClientInput(delta, *support, ec.secure.ring, seed, 1, ids[i], residual);
        REQUIRE(input.ok());
        for (size_t j = 0; j < input->size(); ++j) expect[j] = (expect[j] + (*input)[j]) & mask;
        CHECK(rigs[i]->state.Residual() == residual);  // error feedback kept in the local state
      }
      CHECK(sum->sum == expect);
      if (!guided) CHECK(engine.IngestSecureSum(1, sum->survivors, sum->sum).ok());
    }
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
