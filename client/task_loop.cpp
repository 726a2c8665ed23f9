#include "frugal/client/task_loop.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#include "frugal/codec/shared_support.h"
#include "frugal/core/streams.h"
#include "frugal/energy/model.h"
#include "frugal/model/int8.h"
#include "frugal/proto/convert.h"
#include "frugal/privacy/secure_round.h"
#include "frugal/round/lean_round.h"
#include "frugal/proto/frame.h"

namespace frugal::client {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

v1::Envelope Wrap(v1::Update update) {
  v1::Envelope env;
  *env.mutable_update() = std::move(update);
  return env;
}

v1::Envelope Wrap(v1::SecAgg msg) {
  v1::Envelope env;
  *env.mutable_secagg() = std::move(msg);
  return env;
}

v1::SecAgg SecAggMessage(uint32_t round, uint32_t stage, std::span<const uint8_t> body) {
  v1::SecAgg m;
  m.set_round(round);
  m.set_stage(stage);
  m.set_body(reinterpret_cast<const char*>(body.data()), body.size());
  return m;
}

// secure.debug_dump and debug.secagg_hold_round: files a test reads from the
// state directory. Failures are logged; they are not the client's state.
void WriteDebugFile(const std::string& dir, const std::string& name, std::span<const uint64_t> values) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::ofstream out(std::filesystem::path(dir) / name, std::ios::binary | std::ios::trunc);
  for (uint64_t v : values) {
    for (int b = 0; b < 8; ++b) out.put(static_cast<char>(v >> (8 * b)));
  }
  if (!out) spdlog::warn("cannot write {}/{}", dir, name);
}

// Distributed DP: a fresh key for this client's noise in one round. From the
// device's own RAND_bytes, never from anything the coordinator knows (the
// run's seed is shared): whoever could predict the noise could subtract it.
Result<privacy::NoiseKey> DeviceNoiseKey() {
  privacy::NoiseKey key{};
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
    return UnavailableError("RAND_bytes could not key the distributed-DP noise");
  }
  return key;
}

// A refusal the client must not retry: the wire's code through the table,
// named in the message.
Error Refused(const v1::Error& e) {
  return Error(FromWireErrorCode(e.code()),
               "the coordinator refused this client: " + WireErrorCodeName(e.code()) + ": " + e.message());
}

}  // namespace

TaskLoop::~TaskLoop() { HoldPhases(false); }

void TaskLoop::HoldPhases(bool active) {
  if (env_.phases == nullptr) return;
  env_.phases->Hold(active);
  task_arrived_s_ = active ? std::optional<double>(env_.phases->NowSeconds()) : std::nullopt;
}

v1::Envelope TaskLoop::Hello() const {
  const ClientConfig& cfg = *env_.config;
  v1::Envelope env;
  v1::Hello* hello = env.mutable_hello();
  hello->set_protocol_version(kProtocolVersion);
  hello->set_client_name(cfg.name);
  hello->set_device_class(cfg.device);
  hello->set_radio(cfg.radio);
  hello->set_region(cfg.region);
  for (const char* c : {"uplink-sparse", "uplink-dense", "downlink-quantized", "downlink-fp32"}) hello->add_codecs(c);
  hello->set_num_examples(env_.app != nullptr ? env_.app->num_examples() : env_.local->indices.size());
  hello->set_model_version(state_.held_version());
  if (const StepHistory& h = state_.history(); h.capacity() > 0) {
    hello->set_history_from(h.from());
    hello->set_history_steps(h.capacity());
  }
  hello->set_input_dim(static_cast<uint32_t>(env_.local->data.num_features));
  if (cfg.data.source == "fmnist-partition") {
    // A seeded split of a public data set: the coordinator records it in the
    // run directory, so frugal-sim --replay can give this client its examples.
    v1::DataSplit* d = hello->mutable_data_split();
    d->set_scheme(cfg.data.partition);
    d->set_clients(cfg.data.clients);
    d->set_index(cfg.data.index);
    d->set_alpha(cfg.data.alpha);
    d->set_shards_per_client(cfg.data.shards_per_client);
    d->set_seed(cfg.data.seed);
    d->set_holdout(cfg.data.holdout);
  }
  return env;
}

LoopStep TaskLoop::OnEnvelope(const v1::Envelope& env) {
  const std::string& name = env_.config->name;
  switch (env.body_case()) {
    case v1::Envelope::kRegister:
      return OnRegister(env.register_());
    case v1::Envelope::kTask:
      pending_task_ = env.task();
      HoldPhases(true);  // the download starts now
      return {};
    case v1::Envelope::kModel:
      return OnModel(env.model());
    case v1::Envelope::kHeartbeat: {
      LoopStep step;
      if (!env.heartbeat().reply()) {
        v1::Envelope& reply = step.send.emplace_back();
        reply.mutable_heartbeat()->set_sequence(env.heartbeat().sequence());
        reply.mutable_heartbeat()->set_reply(true);
      }
      return step;
    }
    case v1::Envelope::kEvalTask:
      // The ModelPayload that follows brings the held copy to the version to evaluate.
      pending_eval_ = env.eval_task();
      return {};
    case v1::Envelope::kSecagg:
      return OnSecAgg(env.secagg());
    case v1::Envelope::kError:
      return OnError(env.error());
    case v1::Envelope::kBye:
      spdlog::info("{}: coordinator says bye: {}", name, env.bye().reason());
      if (env.bye().reason() == "run complete" && env_.config->exit_on_run_complete) {
        return {{}, LoopDecision::Stop()};
      }
      return {{}, LoopDecision::Reconnect()};
    default:
      spdlog::warn("{}: unexpected {} from the coordinator; ignored", name, EnvelopeKindName(env));
      return {};
  }
}

LoopStep TaskLoop::OnRegister(const v1::Register& reg) {
  const std::string& name = env_.config->name;
  const std::span<const uint8_t> shape(reinterpret_cast<const uint8_t*>(reg.shape().data()), reg.shape().size());
  if (Status st = state_.Adopt(reg.model(), reg.dim(), env_.local->data, shape); !st.ok()) {
    return {{}, LoopDecision::Reconnect(st.error())};
  }
  auto uplink = FromWire(reg.codec());
  if (!uplink.ok()) return {{}, LoopDecision::Stop(uplink.error().WithContext("Register"))};
  task_settings_ =
      TaskSettings{FromWire(reg.train()), *uplink, FromWireErrorFeedback(reg.codec()), reg.seed(), reg.client_id()};
  if (reg.width() > 0 && reg.width() < 1) {
    if (env_.app != nullptr) {
      return {{}, LoopDecision::Stop(FailedPreconditionError("Register asks for a nested sub-network (width " +
                                                             std::to_string(reg.width()) +
                                                             "), which an embedding app's trainer does not train"))};
    }
    task_settings_->width = reg.width();
    task_settings_->rolling = reg.rolling_width();
  } else if (!(reg.width() >= 0 && reg.width() <= 1)) {
    return {{}, LoopDecision::Stop(InvalidArgumentError("Register width must be in [0, 1], got " +
                                                        std::to_string(reg.width())))};
  }
  registered_ = true;
  spdlog::info("{}: registered as client {} of run {} ({} with {} parameters)", name, reg.client_id(), reg.run_id(),
               reg.model(), reg.dim());
  // Version 1 is built from the run's seed, as in the simulator: the first
  // download is then a chain from version 1, never a full model.
  if (reg.seed_init()) {
    // An older coordinator sends no model_init: its version 1 is InitParams'.
    auto init = reg.model_init().empty() ? Result<ModelInit>(ModelInit::kGlorot) : ParseModelInit(reg.model_init());
    if (!init.ok()) return {{}, LoopDecision::Stop(init.error().WithContext("Register"))};
    if (state_.InitFromSeed(reg.seed(), *init)) spdlog::info("{}: built version 1 from the run's seed", name);
  }
  return {};
}

LoopStep TaskLoop::OnModel(const v1::ModelPayload& payload) {
  const std::string& name = env_.config->name;
  LoopStep step;
  if (pending_eval_ && pending_eval_->round() == payload.round() &&
      (!pending_task_ || pending_task_->round() != payload.round())) {
    const v1::EvalTask task = *pending_eval_;
    pending_eval_.reset();
    *step.send.emplace_back().mutable_eval_result() = DoEval(task, payload);
    return step;
  }
  if (!pending_task_ || pending_task_->round() != payload.round()) {
    spdlog::warn("{}: model payload without its task; ignored", name);
    return step;
  }
  const v1::Task task = *pending_task_;
  pending_task_.reset();
  const PolicyDecision d = env_.decide();
  if (!d.accept) {
    HoldPhases(false);
    spdlog::info("{}: declining round {}: {}", name, task.round(), d.reason);
    v1::Error* e = step.send.emplace_back().mutable_error();
    e->set_code(v1::Error::DECLINED);  // wire-only: the device's choice, not a failure
    e->set_message(d.reason);
    e->set_round(task.round());
    return step;
  }
  if (task.has_secagg()) {
    HoldPhases(false);
    return StartSecure(task, payload);
  }
  auto update = DoTask(task, payload);
  HoldPhases(false);
  if (!update.ok()) {
    // The held copy cannot be trusted: start over with a full model.
    spdlog::warn("{}: round {} failed: {}", name, task.round(), update.error().message());
    state_.Forget();
    step.send.push_back(ErrorEnvelope(update.error(), task.round()));
    step.decision = LoopDecision::Reconnect();  // reconnect, announcing version 0
    return step;
  }
  step.send.push_back(Wrap(std::move(*update)));
  return step;
}

LoopStep TaskLoop::StartSecure(const v1::Task& task, const v1::ModelPayload& payload) {
  const std::string& name = env_.config->name;
  LoopStep step;
  auto refuse = [&](const Error& e) {
    spdlog::warn("{}: secure round {}: {}", name, task.round(), e.message());
    step.send.push_back(ErrorEnvelope(e, task.round()));
    return step;
  };
  if (!task_settings_) return refuse(FailedPreconditionError("a task arrived before Register"));
  if (env_.app != nullptr) {
    return refuse(FailedPreconditionError("the secure pipeline runs the core trainer only, not an embedding app's"));
  }
  auto plan = FromWire(task.secagg(), task.round());
  if (!plan.ok()) return refuse(plan.error());
  // The payload now, as for any task, so the coordinator's view of the held version holds.
  // A merged piece of format version 3 is coded against the round's guide.
  std::vector<uint32_t> guide;
  if (!plan->support_guide.empty()) {
    auto decoded = DecodeSupportGuide(plan->support_guide, state_.dim(), plan->round.length);
    if (!decoded.ok()) return refuse(decoded.error().WithContext("Task.secagg.support_guide"));
    guide = std::move(*decoded);
  }
  // A merged piece of format version 4 is coded given each missed round's
  // support, rebuilt from the steps this agent kept; only a client deriving its
  // guide is sent one (it has the guide's parameters).
  std::optional<StepSupportFn> supports;
  if (plan->guide_steps > 0 && state_.history().version() == state_.held_version()) {
    privacy::SecurePipelineConfig gc;
    gc.support_seed = plan->support_seed;
    gc.guided = plan->guided;
    gc.guide_rounds = plan->guide_steps;
    gc.guide_decay = plan->guide_decay;
    gc.guide_block = plan->guide_block;
    const StepHistory& h = state_.history();
    supports = privacy::StepSupportsFromHistory(h.Newest(std::min<uint32_t>(plan->guide_steps, h.version() - h.from())),
                                                gc, plan->density, state_.dim());
  }
  auto now_holds = state_.Apply(Bytes(payload.payload()), guide, supports ? &*supports : nullptr);
  if (!now_holds.ok() || *now_holds != task.model_version()) {
    const Error e = now_holds.ok() ? InvalidArgumentError("payload brought the model to v" +
                                                          std::to_string(*now_holds) + ", the task is for v" +
                                                          std::to_string(task.model_version()))
                                   : now_holds.error();
    spdlog::warn("{}: secure round {} failed: {}", name, task.round(), e.message());
    state_.Forget();  // the held copy cannot be trusted: start over with a full model
    step.send.push_back(ErrorEnvelope(e, task.round()));
    step.decision = LoopDecision::Reconnect();
    return step;
  }
  const double t0 = env_.cpu_seconds ? env_.cpu_seconds() : 0;
  std::optional<privacy::SecureIdentity> identity;
  if (plan->round.identity || env_.config->require_identity) {
    if (!env_.identity) {
      return refuse(FailedPreconditionError("the round binds keys to identities and this client has none"));
    }
    auto loaded = env_.identity();
    if (!loaded.ok()) return refuse(loaded.error().WithContext("secure round identity"));
    identity = std::move(*loaded);
  }
  auto client = privacy::SecureAggClient::Create(plan->round, plan->position, std::move(identity));
  if (!client.ok()) return refuse(client.error());
  auto keys = client->AdvertiseKeys();
  if (!keys.ok()) return refuse(keys.error());
  const double cpu = (env_.cpu_seconds ? env_.cpu_seconds() : 0) - t0;
  secure_.emplace(SecureTask{task, *plan, std::move(*client), cpu});
  step.send.push_back(Wrap(SecAggMessage(task.round(), 1, *keys)));
  spdlog::debug("{}: secure round {}: position {} of {}, keys advertised", name, task.round(), plan->position,
                plan->round.clients);
  return step;
}

LoopStep TaskLoop::OnSecAgg(const v1::SecAgg& msg) {
  const std::string& name = env_.config->name;
  LoopStep step;
  const uint32_t round = msg.round();
  if (!secure_ || secure_->task.round() != round) {
    spdlog::warn("{}: SecAgg stage {} message for round {} without its secure task; ignored", name, msg.stage(),
                 round);
    return step;
  }
  const std::span<const uint8_t> body = Bytes(msg.body());
  auto cpu = [&] { return env_.cpu_seconds ? env_.cpu_seconds() : 0.0; };
  Result<v1::SecAgg> out = InternalError("unset");
  if (msg.stage() == 2) {
    const double t0 = cpu();
    auto shares = secure_->client.ShareKeys(body);
    secure_->cpu_s += cpu() - t0;
    out = shares.ok() ? Result<v1::SecAgg>(SecAggMessage(round, 2, *shares)) : Result<v1::SecAgg>(shares.error());
  } else if (msg.stage() == 3) {
    if (env_.config->secagg_hold_round == round) {
      spdlog::info("{}: secure round {}: keys shared; holding back the masked input (debug.secagg_hold_round)", name,
                   round);
      WriteDebugFile(env_.config->state_dir, "secagg_hold_r" + std::to_string(round), {});
      return step;
    }
    out = SecureMaskedInput(body);
  } else if (msg.stage() == 4) {
    // The consistency check: sign the survivor list the server announced.
    // Stages 1-3's CPU went with the masked input; this stage's goes with the unmask response.
    const double t0 = cpu();
    auto signature = secure_->client.SignSurvivors(body);
    secure_->cpu_s = cpu() - t0;
    out = signature.ok() ? Result<v1::SecAgg>(SecAggMessage(round, 4, *signature))
                         : Result<v1::SecAgg>(signature.error());
  } else if (msg.stage() == 5) {
    const double t0 = cpu();
    auto response = secure_->client.Unmask(body);
    const double unmask_cpu = secure_->cpu_s + (cpu() - t0);
    out = response.ok() ? Result<v1::SecAgg>(SecAggMessage(round, 5, *response)) : Result<v1::SecAgg>(response.error());
    if (out.ok()) {
      // Stages 4-5's CPU, reported as stages 1-3's was with the masked input.
      out->set_protocol_cpu_s(unmask_cpu);
      out->mutable_ledger()->set_flops(unmask_cpu * (env_.device != nullptr ? env_.device->flops_per_s_fp32 : 0.0));
    }
  } else {
    out = InvalidArgumentError("SecAgg message of unknown stage " + std::to_string(msg.stage()));
  }
  if (!out.ok()) {
    // Out of this round's protocol (a drop-out for the server); the client keeps serving.
    spdlog::warn("{}: secure round {} stage {}: {}", name, round, msg.stage(), out.error().message());
    secure_.reset();
    step.send.push_back(ErrorEnvelope(out.error(), round));
    return step;
  }
  step.send.push_back(Wrap(std::move(*out)));
  if (msg.stage() == 5) secure_.reset();
  return step;
}

// Stage 3: train from the held model, quantize the update with error feedback
// into the ring on the round's support (the simulator's code), mask it.
Result<v1::SecAgg> TaskLoop::SecureMaskedInput(std::span<const uint8_t> share_inbox) {
  SecureTask& st = *secure_;
  const v1::Task& task = st.task;
  const uint32_t round = task.round();
  TrainConfig tc = task_settings_->train;
  tc.seed = RoundClientSeed(task_settings_->run_seed, SeedStream::kTrain, round, task_settings_->client_id);
  const LocalData& local = *env_.local;
  std::vector<float>& delta = state_.scratch();
  FRUGAL_ASSIGN_OR_RETURN(TrainStats stats, TrainClientDelta(state_.model(), state_.params(), local.data,
                                                             local.indices, tc, state_.workspace(), delta));
  privacy::SecurePipelineConfig pc;
  pc.support_seed = st.plan.support_seed;
  std::vector<uint32_t> guide;  // secure.guided: the server's public part of the support
  if (st.plan.guide_steps > 0) {
    // secure.derive_guide: the coordinator's computation, on the steps this agent kept.
    const auto dim = static_cast<uint32_t>(delta.size());
    const StepHistory& h = state_.history();
    if (h.version() != state_.held_version() || h.Newest(st.plan.guide_steps).size() != st.plan.guide_steps) {
      return FailedPreconditionError("Task.secagg: derive the guide from " + std::to_string(st.plan.guide_steps) +
                                     " steps ending at version " + std::to_string(state_.held_version()) +
                                     ", this agent holds " + std::to_string(h.version() - h.from()) +
                                     " ending at version " + std::to_string(h.version()));
    }
    privacy::SecurePipelineConfig gc;
    gc.guided = st.plan.guided;
    gc.guide_rounds = st.plan.guide_steps;
    gc.guide_decay = st.plan.guide_decay;
    gc.guide_block = st.plan.guide_block;
    const std::vector<uint32_t> blocks =
        privacy::GuideBlocksFromSteps(h.Newest(st.plan.guide_steps), dim, gc, st.plan.density);
    guide = ExpandGuideBlocks(blocks, dim, st.plan.guide_block);
  } else if (!st.plan.support_guide.empty()) {
    auto decoded = DecodeSupportGuide(st.plan.support_guide, static_cast<uint32_t>(delta.size()), st.plan.round.length);
    if (!decoded.ok()) return decoded.error().WithContext("Task.secagg.support_guide");
    guide = std::move(*decoded);
  }
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> support,
                          privacy::RoundSupport(pc, round, delta.size(), st.plan.density, guide));
  if (support.size() != st.plan.round.length) {
    return InvalidArgumentError("Task.secagg: the round's support has " + std::to_string(support.size()) +
                                " entries, the plan says " + std::to_string(st.plan.round.length));
  }
  const bool ef = task_settings_->error_feedback;
  std::vector<float> resid_copy;
  std::span<float> resid;
  if (ef) {
    resid_copy = state_.Residual();  // committed only once the masked input is built
    resid = resid_copy;
  }
  const double c0 = env_.cpu_seconds ? env_.cpu_seconds() : 0;
  std::optional<privacy::NoiseKey> noise_key;  // distributed DP: the ring carries noise_mu
  if (st.plan.ring.noise_mu > 0) {
    FRUGAL_ASSIGN_OR_RETURN(noise_key, env_.noise_key ? env_.noise_key() : DeviceNoiseKey());
  }
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint64_t> input,
                          privacy::SecureClientInput(delta, support, st.plan.ring, task_settings_->run_seed, round,
                                                     task_settings_->client_id, resid,
                                                     noise_key ? &*noise_key : nullptr));
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> masked, st.client.MaskedInput(share_inbox, input));
  st.cpu_s += (env_.cpu_seconds ? env_.cpu_seconds() : 0) - c0;
  if (ef) {
    state_.Residual() = std::move(resid_copy);
    state_.SaveResidualFile();
  }
  if (st.plan.debug_dump) WriteDebugFile(env_.config->state_dir, "secagg_input_r" + std::to_string(round) + ".bin", input);
  v1::SecAgg out = SecAggMessage(round, 3, masked);
  out.set_protocol_cpu_s(st.cpu_s);
  v1::LedgerFigures* f = out.mutable_ledger();
  // The protocol's CPU so far (stages 1-3), priced as device compute as frugal-sim does.
  f->set_flops(stats.flops + st.cpu_s * (env_.device != nullptr ? env_.device->flops_per_s_fp32 : 0.0));
  spdlog::debug("{}: secure round {}: trained on {} examples, loss {:.4f}, {} B masked input", env_.config->name,
                round, stats.examples, stats.mean_loss, masked.size());
  return out;
}

LoopStep TaskLoop::OnError(const v1::Error& e) const {
  const std::string& name = env_.config->name;
  switch (e.code()) {
    case v1::Error::PROTOCOL_VERSION:
    case v1::Error::UNAUTHENTICATED:
    case v1::Error::PERMISSION_DENIED:
      spdlog::error("{}: refused by the coordinator ({}): {}", name, WireErrorCodeName(e.code()), e.message());
      return {{}, LoopDecision::Stop(Refused(e))};
    case v1::Error::UNAVAILABLE:
    case v1::Error::RESOURCE_EXHAUSTED:
      spdlog::warn("{}: coordinator reports {}: {}", name, WireErrorCodeName(e.code()), e.message());
      return {{}, LoopDecision::Reconnect(FromWire(e))};
    default:
      break;
  }
  const std::optional<RejectReason> reject = FromWireReject(e.reject());
  spdlog::warn("{}: coordinator reports {}{} for round {}: {}", name, WireErrorCodeName(e.code()),
               reject ? " (" + std::string(RejectReasonName(*reject)) + ")" : std::string(), e.round(), e.message());
  // Before Register the Hello itself was refused: try again later.
  if (!registered_) return {{}, LoopDecision::Reconnect(FromWire(e))};
  return {};
}

LoopDecision TaskLoop::OnDecodeError(const Error& e, std::optional<uint32_t> foreign_version) const {
  if (foreign_version) {
    return LoopDecision::Stop(Error(FromWireErrorCode(v1::Error::PROTOCOL_VERSION),
                                    "PROTOCOL_VERSION: the coordinator speaks protocol " +
                                        std::to_string(*foreign_version) + ", this client speaks " +
                                        std::to_string(kProtocolVersion)));
  }
  return LoopDecision::Reconnect(e);
}

LoopDecision TaskLoop::OnConnectionLost(const Error& e) const {
  if (e.code() == ErrorCode::kUnauthenticated) {
    return LoopDecision::Stop(Error(e.code(), "the coordinator refused this client: UNAUTHENTICATED: " + e.message()));
  }
  if (registered_) {
    spdlog::info("{}: {}", env_.config->name, e.message());
    return LoopDecision::Reconnect();
  }
  return LoopDecision::Reconnect(e);
}

v1::EvalResult TaskLoop::DoEval(const v1::EvalTask& task, const v1::ModelPayload& payload) {
  const std::string& name = env_.config->name;
  v1::EvalResult r;
  r.set_round(task.round());
  if (!state_.has_model()) return r;  // not registered: nothing to evaluate
  auto now_holds = state_.Apply(Bytes(payload.payload()));
  if (!now_holds.ok()) {
    // Nothing evaluated; the next task's payload starts over with a full model.
    spdlog::warn("{}: evaluation after round {}: {}", name, task.round(), now_holds.error().message());
    r.set_model_version(0);
    return r;
  }
  r.set_model_version(*now_holds);
  const LocalData& local = *env_.local;
  if (env_.app != nullptr) {
    embed::EvalReport rep;
    if (Status st = env_.app->Evaluate(state_.params(), &rep); !st.ok()) {
      spdlog::warn("{}: evaluation after round {}: {}", name, task.round(), st.error().message());
      return r;
    }
    r.set_examples(rep.examples);
    r.set_accuracy(rep.accuracy);
    r.set_loss(rep.loss);
    return r;
  }
  const std::span<const uint32_t> rows = local.holdout.empty() ? local.indices : local.holdout;
  if (task.int8()) {
    // eval.int8: the model quantized to int8, where it is dense (else fp32 below).
    if (auto q = Int8Mlp::Quantize(state_.model(), state_.params()); q.ok()) {
      Int8Workspace iws;
      if (auto i8 = EvaluateInt8(*q, local.data, rows, iws); i8.ok()) {
        r.set_examples(i8->examples);
        r.set_accuracy(i8->accuracy);
        r.set_loss(i8->loss);
        r.set_int8(true);
        spdlog::debug("{}: evaluated v{} in int8 on {} local examples: accuracy {:.4f}", name, *now_holds,
                      i8->examples, i8->accuracy);
        return r;
      }
    }
  }
  auto ev = Evaluate(state_.model(), state_.params(), local.data, rows, state_.workspace());
  if (!ev.ok()) {
    spdlog::warn("{}: evaluation after round {}: {}", name, task.round(), ev.error().message());
    return r;
  }
  r.set_examples(ev->examples);
  r.set_accuracy(ev->accuracy);
  r.set_loss(ev->loss);
  spdlog::debug("{}: evaluated v{} on {} local examples: accuracy {:.4f}", name, *now_holds, ev->examples,
                ev->accuracy);
  return r;
}

Result<v1::Update> TaskLoop::DoTask(const v1::Task& task, const v1::ModelPayload& payload) {
  if (!state_.has_model()) return FailedPreconditionError("a task arrived before Register");
  TaskEnergy energy;
  if (env_.phases != nullptr && task_arrived_s_) {
    energy.phases.push_back(env_.phases->Measure("download", *task_arrived_s_, env_.phases->NowSeconds()));
  }
  const std::span<const uint8_t> bytes = Bytes(payload.payload());
  FRUGAL_ASSIGN_OR_RETURN(uint32_t now_holds, state_.Apply(bytes));
  if (now_holds != task.model_version()) {
    return InvalidArgumentError("payload brought the model to v" + std::to_string(now_holds) + ", the task is for v" +
                                std::to_string(task.model_version()));
  }
  if (!task_settings_) return FailedPreconditionError("a task arrived before Register");
  TrainConfig tc = task_settings_->train;
  // The seed the coordinator and the simulator use for this client's round.
  tc.seed = RoundClientSeed(task_settings_->run_seed, SeedStream::kTrain, task.round(), task_settings_->client_id);
  const UplinkConfig& uc = task_settings_->uplink;
  const bool ef = task_settings_->error_feedback;
  std::vector<float> resid_copy;
  std::span<float> resid;
  if (ef) {
    resid_copy = state_.Residual();  // committed only once the update is built
    resid = resid_copy;
  }
  EnergyWindow window(env_.meter);
  const bool measuring = env_.meter != nullptr && window.Start().ok();
  const double train_start_s = env_.phases != nullptr ? env_.phases->NowSeconds() : 0;
  const LocalData& local = *env_.local;
  std::optional<NestedNetwork> nested;
  if (task_settings_->width < 1) {
    // [widths]: the nested sub-network of the held model's current shape, as the server maps it.
    const std::vector<uint32_t> sizes = state_.mlp_sizes();
    if (sizes.size() < 3) return FailedPreconditionError("Register asks for a nested sub-network of a model without hidden layers");
    nested = MakeNestedNetwork(sizes, task_settings_->width, task_settings_->rolling ? task.round() : 0);
  }
  FRUGAL_ASSIGN_OR_RETURN(ClientTaskResult result,
                          env_.app != nullptr ? RunAppTask(task, tc, uc, resid)
                          : nested            ? RunNestedClientTask(*nested, state_.params(), local.data, local.indices,
                                                                    tc, uc, resid, state_.workspace(), state_.scratch())
                                              : RunClientTask(state_.model(), state_.params(), local.data, local.indices,
                                                              tc, uc, resid, state_.workspace(), state_.scratch()));
  if (env_.phases != nullptr) {
    PhaseEnergy train = env_.phases->Measure("train", train_start_s, env_.phases->NowSeconds());
    // The gauge sees the whole device, so it wins over RAPL's package counter when it resolves the phase.
    if (train.source == EnergySource::kMeasured) {
      energy.measured_j = train.joules;
      energy.meter = env_.phases->Describe();
    }
    energy.phases.push_back(std::move(train));
  }
  if (measuring) {
    if (auto j = window.Stop(); j.ok() && !energy.measured_j) {
      energy.measured_j = *j;
      energy.meter = "rapl";
    }
  }
  for (const PhaseEnergy& p : energy.phases) {
    spdlog::info("{}: round {} {}: {:.1f} s, {}{}", env_.config->name, task.round(), p.phase, p.seconds,
                 p.source == EnergySource::kMeasured ? fmt::format("{:.3f} J ", p.joules) : std::string(), p.note);
  }
  if (ef) {
    state_.Residual() = std::move(resid_copy);
    state_.SaveResidualFile();
  }
  spdlog::debug("{}: round {} trained on {} examples, loss {:.4f}, {} B update", env_.config->name, task.round(),
                result.train.examples, result.train.mean_loss, result.update.size());
  return UpdateMessage(task, result, energy);
}

Result<ClientTaskResult> TaskLoop::RunAppTask(const v1::Task& task, const TrainConfig& tc, const UplinkConfig& uc,
                                              std::span<float> residual) {
  const std::span<const float> start = state_.params();
  std::vector<float>& trained = state_.scratch();
  trained.assign(start.begin(), start.end());
  embed::TrainRequest req;
  req.round = task.round();
  req.seed = tc.seed;
  req.epochs = tc.epochs;
  req.batch_size = tc.batch_size;
  req.learning_rate = tc.learning_rate;
  embed::TrainReport rep;
  FRUGAL_RETURN_IF_ERROR(env_.app->Train(trained, req, &rep));
  if (trained.size() != start.size()) {
    return InternalError("the app's Train changed the parameter count from " + std::to_string(start.size()) +
                         " to " + std::to_string(trained.size()));
  }
  // The update is (trained - start), exactly as RunClientTask's.
  for (size_t i = 0; i < trained.size(); ++i) {
    if (!std::isfinite(trained[i])) return InvalidArgumentError("the app's Train left parameter " + std::to_string(i) + " non-finite");
    trained[i] -= start[i];
  }
  ClientTaskResult result;
  FRUGAL_ASSIGN_OR_RETURN(result.update, EncodeUplink(trained, uc, residual));
  result.train.examples = rep.examples;
  result.train.mean_loss = rep.mean_loss;
  result.train.flops = std::isfinite(rep.flops) && rep.flops >= 0 ? rep.flops : 0;
  return result;
}

v1::Update TaskLoop::UpdateMessage(const v1::Task& task, const ClientTaskResult& result,
                                   const TaskEnergy& energy) const {
  v1::Update u;
  u.set_round(task.round());
  u.set_base_version(state_.held_version());
  u.set_update(reinterpret_cast<const char*>(result.update.data()), result.update.size());
  u.set_local_loss(result.train.mean_loss);
  v1::LedgerFigures* f = u.mutable_ledger();
  f->set_flops(result.train.flops);
  f->set_int8(false);
  if (energy.measured_j) {
    f->set_measured(true);
    f->set_measured_compute_j(*energy.measured_j);
    f->set_meter(energy.meter);
  }
  for (const PhaseEnergy& p : energy.phases) {
    v1::PhaseFigures* pf = f->add_phases();
    pf->set_phase(p.phase);
    pf->set_seconds(p.seconds);
    pf->set_measured(p.source == EnergySource::kMeasured);
    pf->set_joules(p.joules);
    pf->set_note(p.note);
  }
  return u;
}

}  // namespace frugal::client
