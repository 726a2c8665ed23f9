// The task loop with an embedding app's trainer (frugal/client/embed.h): the
// update it sends is exactly (the app's trained parameters - the held model),
// coded as the run's uplink asks, and the app's own figures reach the ledger.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "client/task_loop_rig.h"
#include "data/temp_dir.h"
#include "frugal/client/task_loop.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/streams.h"
#include "frugal/proto/convert.h"
#include "frugal/proto/frame.h"
#include "frugal/round/engine.h"

namespace frugal::client {
namespace {

// An app that moves parameter i by 0.01 * (i + 1): the expected update is known exactly.
class StepApp final : public embed::Trainer {
 public:
  uint32_t input_dim() const override { return 4; }
  uint32_t num_classes() const override { return 3; }
  uint64_t num_examples() const override { return 40; }
  Status Train(std::span<float> params, const embed::TrainRequest& r, embed::TrainReport* out) override {
    last = r;
    for (size_t i = 0; i < params.size(); ++i) params[i] += 0.01f * static_cast<float>(i + 1);
    *out = {40, 0.5, 1234.0};
    ++trained;
    return OkStatus();
  }
  Status Evaluate(std::span<const float>, embed::EvalReport* out) override {
    *out = {40, 0.75, 0.6};
    return OkStatus();
  }
  embed::TrainRequest last;
  int trained = 0;
};

TEST_SUITE("client") {
  TEST_CASE("an embedding app's training is sent as its exact parameter change, with its own figures") {
    Rig rig;
    rig.cfg.name = "app-1";
    rig.local = LocalData{};  // the app keeps its data: the agent knows only the shape
    rig.local.data.num_features = 4;
    rig.local.data.num_classes = 3;
    StepApp app;
    rig.env.app = &app;
    TaskLoop loop(rig.env, rig.state);
    CHECK(loop.Hello().hello().num_examples() == 40);

    v1::Envelope reg;
    v1::Register* r = reg.mutable_register_();
    r->set_protocol_version(kProtocolVersion);
    r->set_client_id(7);
    r->set_model("logreg");
    r->set_dim(15);
    r->set_seed_init(true);
    r->set_seed(3);
    TrainConfig tc;
    tc.batch_size = 4;
    tc.epochs = 2;
    ToWire(tc, 0, r->mutable_train());
    ToWire(UplinkConfig{.density = 1.0, .values = ValueCoding::kFp32}, false, r->mutable_codec());
    REQUIRE(loop.OnEnvelope(reg).decision.kind == LoopDecision::Kind::kContinue);
    const std::vector<float> start = std::vector<float>(rig.state.params().begin(), rig.state.params().end());

    v1::Envelope task;
    task.mutable_task()->set_round(1);
    task.mutable_task()->set_model_version(1);
    loop.OnEnvelope(task);
    RoundEngine engine(start, EngineConfig{});
    const uint64_t selected[] = {7};
    REQUIRE(engine.OpenRound(1, selected).ok());
    auto payload = engine.ModelPayloadFor(1);
    REQUIRE(payload.ok());
    v1::Envelope model;
    model.mutable_model()->set_round(1);
    model.mutable_model()->set_payload(reinterpret_cast<const char*>((*payload)->data()), (*payload)->size());
    const LoopStep step = loop.OnEnvelope(model);
    REQUIRE(app.trained == 1);
    CHECK(app.last.round == 1);
    CHECK(app.last.epochs == 2);
    CHECK(app.last.batch_size == 4);
    CHECK(app.last.seed == RoundClientSeed(3, SeedStream::kTrain, 1, 7));
    REQUIRE(step.send.size() == 1);
    REQUIRE(step.send[0].has_update());
    const v1::Update& u = step.send[0].update();
    CHECK(u.ledger().flops() == 1234.0);
    CHECK(u.local_loss() == doctest::Approx(0.5));
    const std::string& bytes = u.update();
    auto decoded = DecodeUplink({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, 15);
    REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
    REQUIRE(decoded->indices.size() == 15);
    for (size_t k = 0; k < 15; ++k) {
      const uint32_t i = decoded->indices[k];
      // Plain reference: (start + step) - start, in float as the agent computes it.
      CHECK(decoded->values[k] == (start[i] + 0.01f * static_cast<float>(i + 1)) - start[i]);
    }
  }
}

}  // namespace
}  // namespace frugal::client
