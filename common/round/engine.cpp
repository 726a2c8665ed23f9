#include "frugal/round/engine.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstring>
#include <string>

#include "frugal/codec/frame.h"
#include "frugal/round/model_payload.h"
#include "frugal/round/step_history.h"
#include "frugal/privacy/secure_pipeline.h"
#include "frugal/codec/ring_quant.h"
#include "frugal/codec/shared_support.h"
#include "frugal/codec/zero_set.h"

namespace frugal {
namespace {

// Removes from `u` its entries at `frozen` (both ascending).
void DropCoordinates(std::span<const uint32_t> frozen, SparseUpdate& u) {
  size_t w = 0, f = 0;
  for (size_t r = 0; r < u.indices.size(); ++r) {
    while (f < frozen.size() && frozen[f] < u.indices[r]) ++f;
    if (f < frozen.size() && frozen[f] == u.indices[r]) continue;
    u.indices[w] = u.indices[r];
    u.values[w] = u.values[r];
    ++w;
  }
  u.indices.resize(w);
  u.values.resize(w);
}

}  // namespace

Result<Pipeline> ParsePipeline(std::string_view name) {
  if (name == "dense") return Pipeline::kDense;
  if (name == "frugal") return Pipeline::kFrugal;
  if (name == "secure") return Pipeline::kSecure;
  return InvalidArgumentError("unknown pipeline '" + std::string(name) + "' (expected dense, frugal or secure)");
}

std::string_view PipelineName(Pipeline p) {
  switch (p) {
    case Pipeline::kDense: return "dense";
    case Pipeline::kFrugal: return "frugal";
    case Pipeline::kSecure: return "secure";
  }
  return "unknown";
}

uint32_t RoundPlan::SelectCount() const {
  return static_cast<uint32_t>(std::ceil(clients_per_round * std::max(1.0, over_selection) - 1e-9));
}

double RoundPlan::SamplingRate(size_t selected, uint64_t eligible) const {
  if (eligible == 0) return 1;
  const double q = static_cast<double>(poisson ? SelectCount() : selected) / static_cast<double>(eligible);
  return std::min(1.0, poisson && Weighted() ? inclusion_cap * q : q);
}

std::string_view RejectReasonName(RejectReason r) {
  switch (r) {
    case RejectReason::kRoundClosed: return "round_closed";
    case RejectReason::kStaleRound: return "stale_round";
    case RejectReason::kNotSelected: return "not_selected";
    case RejectReason::kDuplicate: return "duplicate";
    case RejectReason::kStaleBase: return "stale_base";
    case RejectReason::kMalformed: return "malformed";
    case RejectReason::kWrongDimension: return "wrong_dimension";
    case RejectReason::kNonFinite: return "non_finite";
    case RejectReason::kBadWeight: return "bad_weight";
    case RejectReason::kTooDense: return "too_dense";
  }
  return "unknown";
}

RoundEngine::RoundEngine(std::vector<float> initial, EngineConfig cfg)
    : cfg_(cfg),
      model_(std::move(initial)),
      server_residual_(SendsSteps(cfg.pipeline) ? model_.size() : 0, 0.0f),
      release_(cfg.release_ema > 0 ? model_ : std::vector<float>{}),
      aggregator_(model_.size(), cfg.averaging, cfg.robust),
      server_opt_(model_.size(), cfg.server_opt),
      scratch_(model_.size()),
      dp_(cfg.dp.enabled() ? std::make_unique<privacy::CentralDp>(cfg.dp) : nullptr) {
  if (cfg_.pipeline == Pipeline::kDense) {
    cfg_.full_model.bits = 0;  // the baseline sends fp32
  }
  if (cfg_.dp.mode == privacy::DpMode::kDistributed) {
    // Clients clip and noise in the ring: the plan sets the ring every client
    // quantizes into (secure_config()) and the server decodes with.
    auto plan = cfg_.pipeline != Pipeline::kSecure
                    ? Result<privacy::DistributedRing>(InvalidArgumentError(
                          "privacy.mode = \"distributed\" needs pipeline = \"secure\""))
                    : privacy::PlanDistributedRing(cfg_.dp, cfg_.secure.ring, cfg_.secure.dropout,
                                                   UplinkKeepCount(cfg_.uplink_density, model_.size()));
    if (plan.ok()) {
      cfg_.secure.ring = plan->ring;
      dp_->SetDistributedRing(*plan);
    } else {
      dp_error_ = plan.error();
    }
  }
}

Result<std::unique_ptr<RoundEngine>> RoundEngine::Restore(EngineState state, EngineConfig cfg) {
  if (state.version == 0) return InvalidArgumentError("engine state has version 0");
  if (state.model.empty()) return InvalidArgumentError("engine state has an empty model");
  if (!state.shape.old_sizes.empty()) {
    // A pruned engine: its model has the shape's new sizes, and full models carry the shape again.
    FRUGAL_RETURN_IF_ERROR(CheckShapeChange(state.shape));
    if (state.shape.NewParamCount() != state.model.size()) {
      return DataLossError("engine state's shape has " + std::to_string(state.shape.NewParamCount()) +
                           " parameters, its model " + std::to_string(state.model.size()));
    }
  }
  auto engine = std::make_unique<RoundEngine>(std::move(state.model), cfg);
  engine->shape_ = std::move(state.shape);
  const size_t d = engine->model_.size();
  engine->version_ = state.version;
  // Keep the consecutive steps ending at the current version (step v takes
  // v-1 to v, so the first possible one is 2), at most delta_window of them.
  uint32_t first = state.version + 1;
  if (SendsSteps(engine->cfg_.pipeline)) {
    while (first > 2 && state.steps.contains(first - 1) && state.version + 2 - first <= engine->cfg_.delta_window) {
      --first;
    }
  }
  engine->steps_base_ = first - 1;
  for (uint32_t v = first; v <= state.version; ++v) {
    engine->steps_.push_back(std::move(state.steps.at(v)));
    engine->step_rounds_.push_back(0);
  }
  if (engine->dp_ && !state.server_state.empty()) {
    // The DP block (clip, accountant) is the state's tail; a state without one is refused.
    const size_t n = engine->dp_->StateBytes();
    if (state.server_state.size() < n) {
      return DataLossError("engine server state has " + std::to_string(state.server_state.size()) +
                           " bytes, too few for the DP state (" + std::to_string(n) + " bytes)");
    }
    const std::span<const uint8_t> tail = std::span<const uint8_t>(state.server_state).last(n);
    FRUGAL_RETURN_IF_ERROR(engine->dp_->SetState(tail));
    state.server_state.resize(state.server_state.size() - n);
  }
  if (!state.server_state.empty()) {
    const size_t residual = engine->server_residual_.size(), optimizer = engine->server_opt_.state_size(),
                 release = engine->release_.size(), fixed = residual + optimizer + release;
    // A robust rule whose state grows (foolsgold's client histories) takes the rest; its SetState checks it.
    const size_t robust = engine->aggregator_.VariableState() && state.server_state.size() >= 4 * fixed
                              ? state.server_state.size() / 4 - fixed
                              : engine->aggregator_.StateSize();
    const size_t floats = fixed + robust;
    if (state.server_state.size() != 4 * floats) {
      return DataLossError("engine server state has " + std::to_string(state.server_state.size()) +
                           " bytes, expected " + std::to_string(4 * floats) + " for dimension " + std::to_string(d) +
                           " and this configuration (server optimizer, released average, robust rule)");
    }
    std::vector<float> all(floats);
    std::memcpy(all.data(), state.server_state.data(), 4 * floats);
    std::span<const float> rest(all);
    auto take = [&rest](size_t n) {
      std::span<const float> part = rest.first(n);
      rest = rest.subspan(n);
      return part;
    };
    std::ranges::copy(take(residual), engine->server_residual_.begin());
    FRUGAL_RETURN_IF_ERROR(engine->server_opt_.SetState(take(optimizer)));
    std::ranges::copy(take(release), engine->release_.begin());
    FRUGAL_RETURN_IF_ERROR(engine->aggregator_.SetState(take(robust)));
  }
  return engine;
}

std::vector<uint8_t> RoundEngine::ServerState() const {
  std::vector<uint8_t> out;
  const std::vector<float> robust = aggregator_.State();
  out.reserve(4 * (server_residual_.size() + server_opt_.state_size() + release_.size() + robust.size()));
  for (std::span<const float> part : {std::span<const float>(server_residual_), server_opt_.state(),
                                      std::span<const float>(release_), std::span<const float>(robust)}) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(part.data());
    out.insert(out.end(), bytes, bytes + 4 * part.size());
  }
  if (dp_) {
    const std::vector<uint8_t> dp = dp_->State();
    out.insert(out.end(), dp.begin(), dp.end());
  }
  return out;
}

Status RoundEngine::OpenRound(uint32_t round, std::span<const uint64_t> selected) {
  if (open_) return FailedPreconditionError("round " + std::to_string(round_) + " is still open");
  if (dp_error_) return *dp_error_;
  if (round <= round_ && round_ != 0) {
    return FailedPreconditionError("round " + std::to_string(round) + " is not after round " + std::to_string(round_));
  }
  open_ = true;
  round_ = round;
  selected_ = std::set<uint64_t>(selected.begin(), selected.end());
  ingested_.clear();
  pending_.clear();
  reference_.reset();
  sampling_rate_ = 1;
  secure_support_.clear();
  secure_sum_.clear();
  secure_count_ = 0;
  if (central_dp()) dp_->BeginRound(model_.size());
  return OkStatus();
}

Status RoundEngine::SetEligible(uint64_t eligible) {
  if (!open_) return FailedPreconditionError("SetEligible: no round is open");
  if (eligible < selected_.size() || eligible == 0) {
    return InvalidArgumentError("round " + std::to_string(round_) + ": " + std::to_string(eligible) +
                                " eligible clients, fewer than the " + std::to_string(selected_.size()) + " selected");
  }
  sampling_rate_ = static_cast<double>(selected_.size()) / static_cast<double>(eligible);
  return OkStatus();
}

Status RoundEngine::SetSamplingRate(double sampling_rate) {
  if (!open_) return FailedPreconditionError("SetSamplingRate: no round is open");
  if (!(sampling_rate > 0 && sampling_rate <= 1)) {
    return InvalidArgumentError("round " + std::to_string(round_) + ": sampling rate " + std::to_string(sampling_rate) +
                                " outside (0, 1]");
  }
  sampling_rate_ = sampling_rate;
  return OkStatus();
}

Status RoundEngine::CheckPrivacyBudget(uint32_t round, double sampling_rate) const {
  if (!dp_) return OkStatus();
  return dp_->CheckBudget(round, sampling_rate);
}

Result<std::shared_ptr<const std::vector<uint8_t>>> RoundEngine::ModelPayloadFor(uint32_t held_version,
                                                                                 uint32_t history_from) {
  if (held_version > version_) {
    return InvalidArgumentError("client claims version " + std::to_string(held_version) +
                                " but the newest is " + std::to_string(version_));
  }
  const bool v4 = MergeV4For(held_version, history_from);
  auto& cache = v4 ? payload_cache_v4_ : payload_cache_;
  auto it = cache.find(held_version);
  if (it != cache.end()) return it->second;

  std::vector<uint8_t> bytes;
  const bool chain_possible = SendsSteps(cfg_.pipeline) && held_version != 0 &&
                              held_version >= steps_base_ && held_version < version_;
  size_t chain_bytes = 0;
  if (chain_possible) {
    for (uint32_t v = held_version; v < version_; ++v) chain_bytes += 4 + steps_[v - steps_base_].size();
  }
  std::shared_ptr<const std::vector<uint8_t>> full;
  auto encode_full = [&]() -> Status {
    auto cached = payload_cache_.find(0);
    if (cached != payload_cache_.end()) {
      full = cached->second;
      return OkStatus();
    }
    FRUGAL_ASSIGN_OR_RETURN(DownlinkEncoded enc, EncodeDownlink(model_, {}, cfg_.full_model));
    // A pruned model comes with its shape, so a client holding nothing learns it.
    const std::vector<uint8_t> shape = shape_.old_sizes.empty() ? std::vector<uint8_t>{} : EncodeShapeChange(shape_);
    // A quantized model is only near zero where the server holds exact zeros:
    // those coordinates follow it as a zero set (fp32 carries them as they are).
    std::vector<uint8_t> zero_set;
    if (cfg_.full_model.bits != 0 && !frozen_.empty()) {
      std::vector<uint32_t> zeros;
      for (uint32_t j : frozen_) {
        if (model_[j] == 0.0f) zeros.push_back(j);
      }
      if (!zeros.empty()) {
        FRUGAL_ASSIGN_OR_RETURN(zero_set, EncodeZeroSet({}, zeros, static_cast<uint32_t>(model_.size())));
      }
    }
    std::vector<std::span<const uint8_t>> pieces;
    if (!shape.empty()) pieces.emplace_back(shape);
    pieces.emplace_back(enc.bytes);
    if (!zero_set.empty()) pieces.emplace_back(zero_set);
    ModelPayloadHeader h{ModelPayloadKind::kFull, 0, version_, static_cast<uint32_t>(model_.size()),
                         static_cast<uint32_t>(pieces.size())};
    full = std::make_shared<const std::vector<uint8_t>>(EncodeModelPayload(h, pieces));
    payload_cache_[0] = full;
    return OkStatus();
  };
  if (held_version == version_) {
    // Up to date: an empty chain.
    ModelPayloadHeader h{ModelPayloadKind::kChain, version_, version_, static_cast<uint32_t>(model_.size()), 0};
    auto p = std::make_shared<const std::vector<uint8_t>>(EncodeModelPayload(h, {}));
    cache[held_version] = p;
    return p;
  }
  FRUGAL_RETURN_IF_ERROR(encode_full());
  if (chain_possible && cfg_.merge_chains && version_ - held_version >= 2) {
    // The merged piece is one more way to send the same steps: kept only when smaller.
    // Both framed alike (one model payload header; 4 bytes per piece), so the pieces' bytes decide.
    std::vector<uint8_t> merged = MergedChain(held_version, v4);
    if (!merged.empty() && 4 + merged.size() < chain_bytes) {
      const std::span<const uint8_t> piece(merged);
      ModelPayloadHeader h{ModelPayloadKind::kMerged, held_version, version_, static_cast<uint32_t>(model_.size()), 1};
      auto p = std::make_shared<const std::vector<uint8_t>>(EncodeModelPayload(h, std::span(&piece, 1)));
      if (p->size() < full->size()) {
        cache[held_version] = p;
        return p;
      }
    }
  }
  if (chain_possible && chain_bytes < full->size()) {
    std::vector<std::span<const uint8_t>> pieces;
    for (uint32_t v = held_version; v < version_; ++v) pieces.emplace_back(steps_[v - steps_base_]);
    ModelPayloadHeader h{ModelPayloadKind::kChain, held_version, version_, static_cast<uint32_t>(model_.size()),
                         static_cast<uint32_t>(pieces.size())};
    auto p = std::make_shared<const std::vector<uint8_t>>(EncodeModelPayload(h, pieces));
    cache[held_version] = p;
    return p;
  }
  cache[held_version] = full;
  return full;
}

bool RoundEngine::MergeV4For(uint32_t held_version, uint32_t history_from) const {
  // Only a client deriving its guide is sent one: its task carries the guide's parameters the supports need.
  if (cfg_.merge_version < 4 || cfg_.pipeline != Pipeline::kSecure || cfg_.secure.guided <= 0 ||
      !cfg_.secure.derive_guide) {
    return false;
  }
  const uint32_t n = cfg_.secure.guide_rounds;
  if (n == 0 || held_version >= version_ || held_version < steps_base_ + n) return false;
  if (!HistoryCovers(history_from, held_version, n)) return false;
  for (uint32_t v = held_version; v < version_; ++v) {
    if (step_rounds_[v - steps_base_] == 0) return false;
  }
  return true;
}

std::vector<uint8_t> RoundEngine::MergedChain(uint32_t held_version, bool v4) const {
  const auto d = static_cast<uint32_t>(model_.size());
  std::vector<SparseUpdate> steps;
  steps.reserve(version_ - held_version);
  for (uint32_t v = held_version; v < version_; ++v) {
    const std::vector<uint8_t>& piece = steps_[v - steps_base_];
    if (IsShapeChange(piece)) return {};  // a pruning step: the chain carries it
    auto u = DecodeUplink(piece, d);
    if (!u.ok()) return {};
    steps.push_back(std::move(*u));
  }
  // Version 4 for a client keeping the steps its first missed round's guide
  // came from; version 2 when that is smaller (a client reading 4 reads 2).
  if (v4) {
    std::vector<SparseUpdate> history;
    const uint32_t n = cfg_.secure.guide_rounds;
    for (uint32_t v = held_version - n; v < held_version; ++v) {
      auto u = DecodeBroadcastStep(steps_[v - steps_base_], d);
      if (!u.ok()) return {};
      history.push_back(std::move(*u));
    }
    std::vector<uint32_t> rounds;
    for (uint32_t v = held_version; v < version_; ++v) rounds.push_back(step_rounds_[v - steps_base_]);
    auto merged = EncodeMergedStepsV4(steps, rounds, d,
                                      privacy::StepSupportsFromHistory(history, cfg_.secure, cfg_.uplink_density, d));
    auto v2 = EncodeMergedSteps(steps, d, 2);
    if (merged.ok() && (!v2.ok() || merged->size() <= v2->size())) return std::move(*merged);
    if (v2.ok()) return std::move(*v2);
    return {};
  }
  // Fails only on steps it cannot code (too many distinct values): the chain goes instead.
  // Version 3 codes the union given the round's support guide, which the
  // secure pipeline's clients receive with their task (the same steps_, so the same guide).
  std::vector<uint32_t> guide;
  // Version 4's other clients get version 3 unless they derive the guide (which they hold only after the piece).
  const uint8_t version = cfg_.merge_version >= 4 ? (cfg_.secure.derive_guide ? 2 : 3)
                                                  : static_cast<uint8_t>(cfg_.merge_version);
  if (version >= 3 && cfg_.pipeline == Pipeline::kSecure && cfg_.secure.guided > 0) {
    auto g = SecureSupportGuide();
    if (!g.ok()) return {};
    guide = std::move(*g);
  }
  auto merged = EncodeMergedSteps(steps, d, version, guide);
  if (!merged.ok()) return {};
  if (version >= 3) {
    // Little of the union in the guide: version 2's one index section is the smaller; a
    // client that reads version 3 reads version 2, so the smaller goes.
    auto v2 = EncodeMergedSteps(steps, d, 2);
    if (v2.ok() && v2->size() < merged->size()) return std::move(*v2);
  }
  return std::move(*merged);
}

std::span<const uint8_t> RoundEngine::StepPayload(uint32_t to_version) const {
  // The dense pipeline keeps no steps; the frugal one keeps the last delta_window.
  if (to_version <= steps_base_ || to_version - 1 - steps_base_ >= steps_.size()) return {};
  return steps_[to_version - 1 - steps_base_];
}

Status RoundEngine::Reject(RejectReason why, RejectReason* out, Error e) {
  if (out != nullptr) *out = why;
  return e;
}

Status RoundEngine::Ingest(uint32_t round, uint64_t client_id, uint32_t base_version,
                           std::span<const uint8_t> update, double weight, RejectReason* reason,
                           std::span<const uint32_t> nested) {
  const std::string who = "update from client " + std::to_string(client_id) + " for round " + std::to_string(round);
  if (!open_) return Reject(RejectReason::kRoundClosed, reason, FailedPreconditionError(who + ": no round is open"));
  if (round != round_) {
    return Reject(RejectReason::kStaleRound, reason,
                  FailedPreconditionError(who + ": the open round is " + std::to_string(round_)));
  }
  if (!selected_.contains(client_id)) {
    return Reject(RejectReason::kNotSelected, reason, FailedPreconditionError(who + ": client was not selected"));
  }
  if (ingested_.contains(client_id)) {
    return Reject(RejectReason::kDuplicate, reason, FailedPreconditionError(who + ": already received"));
  }
  if (base_version != version_) {
    return Reject(RejectReason::kStaleBase, reason,
                  FailedPreconditionError(who + ": trained on version " + std::to_string(base_version) +
                                          ", current is " + std::to_string(version_)));
  }
  if (cfg_.pipeline == Pipeline::kSecure) {
    return Reject(RejectReason::kMalformed, reason,
                  InvalidArgumentError(who + ": the secure pipeline takes only the round's unmasked SecAgg+ sum"));
  }
  if (!(weight > 0) || !std::isfinite(weight)) {
    return Reject(RejectReason::kBadWeight, reason,
                  InvalidArgumentError(who + ": weight must be positive and finite"));
  }
  // A nested sub-network's update (per-device widths) is of the sub-network's dimension.
  const size_t dim = nested.empty() ? model_.size() : nested.size();
  if (!nested.empty() && (nested.size() > model_.size() || nested.back() >= model_.size() ||
                          std::ranges::adjacent_find(nested, std::greater_equal<uint32_t>{}) != nested.end())) {
    return Reject(RejectReason::kWrongDimension, reason,
                  InvalidArgumentError(who + ": its sub-network's map does not fit the model of dimension " +
                                       std::to_string(model_.size())));
  }
  auto frame = ParseFrame(update);
  if (!frame.ok()) return Reject(RejectReason::kMalformed, reason, frame.error().WithContext(who));
  if (frame->header.dim != dim) {
    return Reject(RejectReason::kWrongDimension, reason,
                  InvalidArgumentError(who + ": update has dimension " + std::to_string(frame->header.dim) + ", the " +
                                       (nested.empty() ? "model" : "client's sub-network") + " has " +
                                       std::to_string(dim)));
  }
  auto decoded = DecodeUplink(update, static_cast<uint32_t>(dim));
  if (!decoded.ok()) {
    const std::string& m = decoded.error().message();
    const bool non_finite = m.find("NaN") != std::string::npos || m.find("Inf") != std::string::npos;
    return Reject(non_finite ? RejectReason::kNonFinite : RejectReason::kMalformed, reason,
                  decoded.error().WithContext(who));
  }
  if (const size_t limit = UplinkKeepCount(cfg_.uplink_density, dim); decoded->indices.size() > limit) {
    return Reject(RejectReason::kTooDense, reason,
                  InvalidArgumentError(who + ": update carries " + std::to_string(decoded->indices.size()) +
                                       " values, the round's uplink density allows " + std::to_string(limit)));
  }
  if (!nested.empty()) {
    // Into the model's coordinates (the map ascends, so the indices still do);
    // support averaging then divides each coordinate by the weights of the
    // clients that trained it.
    for (uint32_t& i : decoded->indices) i = nested[i];
    decoded->dim = static_cast<uint32_t>(model_.size());
  }
  if (central_dp()) {
    // Central DP streams: the update is clipped into the round's running sum
    // now, so a round never holds its decoded updates (exact, so arrival
    // order still changes nothing).
    if (Status st = dp_->Accumulate(*decoded); !st.ok()) {
      return Reject(RejectReason::kWrongDimension, reason, st.error().WithContext(who));
    }
    ingested_.insert(client_id);
    return OkStatus();
  }
  ingested_.insert(client_id);
  pending_.emplace(client_id, PendingUpdate{std::move(*decoded), weight});
  return OkStatus();
}

Result<std::vector<uint32_t>> RoundEngine::SecureSupport(uint32_t round) const {
  if (cfg_.pipeline != Pipeline::kSecure) return InvalidArgumentError("a shared support exists only in the secure pipeline");
  if (cfg_.secure.guided <= 0) return privacy::RoundSupport(cfg_.secure, round, model_.size(), cfg_.uplink_density);
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> guide, SecureSupportGuide());
  return privacy::RoundSupport(cfg_.secure, round, model_.size(), cfg_.uplink_density, guide);
}

Result<std::vector<uint32_t>> RoundEngine::SecureSupportGuide() const {
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> blocks, SecureSupportGuideBlocks());
  return ExpandGuideBlocks(blocks, static_cast<uint32_t>(model_.size()), cfg_.secure.guide_block);
}

Result<std::vector<uint32_t>> RoundEngine::SecureSupportGuideBlocks() const {
  if (cfg_.pipeline != Pipeline::kSecure) return InvalidArgumentError("a support guide exists only in the secure pipeline");
  if (cfg_.secure.guided <= 0 || steps_.empty()) return std::vector<uint32_t>{};
  const auto dim = static_cast<uint32_t>(model_.size());
  const uint32_t n = SecureGuideSteps();
  std::vector<SparseUpdate> steps;
  steps.reserve(n);
  for (size_t i = steps_.size() - n; i < steps_.size(); ++i) {
    FRUGAL_ASSIGN_OR_RETURN(SparseUpdate step, DecodeBroadcastStep(steps_[i], dim));
    steps.push_back(std::move(step));
  }
  return privacy::GuideBlocksFromSteps(steps, dim, cfg_.secure, cfg_.uplink_density);
}

uint32_t RoundEngine::SecureGuideSteps() const {
  if (cfg_.pipeline != Pipeline::kSecure || cfg_.secure.guided <= 0) return 0;
  return static_cast<uint32_t>(std::min<size_t>(cfg_.secure.guide_rounds, steps_.size()));
}

bool RoundEngine::ClientDerivesGuide(uint32_t history_from_after) const {
  const uint32_t n = SecureGuideSteps();
  return cfg_.secure.derive_guide && n > 0 && HistoryCovers(history_from_after, version_, n);
}

Status RoundEngine::IngestSecureSum(uint32_t round, std::span<const uint64_t> clients,
                                    std::span<const uint64_t> ring_sum) {
  const std::string what = "secure sum for round " + std::to_string(round);
  if (cfg_.pipeline != Pipeline::kSecure) return FailedPreconditionError(what + ": not the secure pipeline");
  if (!open_ || round != round_) return FailedPreconditionError(what + ": the open round is " + std::to_string(round_));
  if (secure_count_ != 0) return FailedPreconditionError(what + ": already received");
  const std::set<uint64_t> distinct(clients.begin(), clients.end());
  if (clients.empty() || distinct.size() != clients.size()) {
    return InvalidArgumentError(what + ": needs at least one client, each once");
  }
  for (uint64_t c : clients) {
    if (!selected_.contains(c)) return InvalidArgumentError(what + ": client " + std::to_string(c) + " was not selected");
  }
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> support, SecureSupport(round));
  if (ring_sum.size() != support.size()) {
    return InvalidArgumentError(what + ": " + std::to_string(ring_sum.size()) + " entries, the support has " +
                                std::to_string(support.size()));
  }
  auto sum = RingDecodeSum(ring_sum, static_cast<uint32_t>(clients.size()), cfg_.secure.ring);
  if (!sum.ok()) return sum.error().WithContext(what);
  secure_support_ = std::move(support);
  secure_sum_ = std::move(*sum);
  secure_count_ = static_cast<uint32_t>(clients.size());
  return OkStatus();
}

Status RoundEngine::SetReference(SparseUpdate reference) {
  if (!open_) return FailedPreconditionError("server reference update: no round is open");
  if (reference.dim != model_.size() || reference.indices.size() != reference.values.size()) {
    return InvalidArgumentError("server reference update has dimension " + std::to_string(reference.dim) +
                                ", the model has " + std::to_string(model_.size()));
  }
  reference_ = std::move(reference);
  return OkStatus();
}

Status RoundEngine::SetServerCorrection(std::vector<float> correction) {
  if (!open_) return FailedPreconditionError("server correction: no round is open");
  if (correction.size() != model_.size()) {
    return InvalidArgumentError("server correction has dimension " + std::to_string(correction.size()) +
                                ", the model has " + std::to_string(model_.size()));
  }
  for (float v : correction) {
    if (!std::isfinite(v)) return InvalidArgumentError("server correction has a non-finite value");
  }
  correction_ = std::move(correction);
  return OkStatus();
}

Status RoundEngine::SetServerFrozen(std::vector<uint32_t> frozen) {
  for (size_t i = 0; i < frozen.size(); ++i) {
    if (frozen[i] >= model_.size() || (i > 0 && frozen[i] <= frozen[i - 1])) {
      return InvalidArgumentError("server frozen coordinates are not ascending indices into the model");
    }
  }
  frozen_ = std::move(frozen);
  return OkStatus();
}

Result<RoundOutcome> RoundEngine::CloseRound(uint32_t min_quorum) {
  if (!open_) return FailedPreconditionError("no round is open");
  open_ = false;
  payload_cache_.clear();
  payload_cache_v4_.clear();
  RoundOutcome out;
  out.round = round_;
  out.accepted = static_cast<uint32_t>(pending_.size());
  out.new_version = version_;
  // Folded in client-id order, not arrival order: floating-point sums depend
  // on order, and the same updates must give the same model whether they came
  // over sockets (coordinator) or from a thread pool (simulator).
  std::map<uint64_t, PendingUpdate> pending = std::move(pending_);
  pending_.clear();
  std::optional<SparseUpdate> reference = std::move(reference_);
  reference_.reset();
  const std::vector<float> correction = std::move(correction_);
  correction_.clear();
  const std::vector<uint32_t>& frozen = frozen_;
  // Clients' values at frozen coordinates are dropped before any rule weighs them.
  if (!frozen.empty()) {
    for (auto& [client, u] : pending) DropCoordinates(frozen, u.update);
  }
  const bool secure = cfg_.pipeline == Pipeline::kSecure;
  if (secure) out.accepted = secure_count_;
  if (central_dp()) out.accepted = dp_->accumulated();
  if (out.accepted < std::max<uint32_t>(1, min_quorum)) return out;
  std::vector<RobustInput> inputs;
  inputs.reserve(pending.size());
  if (secure) {
    // The server knows only the sum: every survivor weighs the same. The
    // pipeline's own gain (secure.step_scale) scales the mean before the
    // server optimizer, so [server] keeps one meaning for every pipeline.
    std::fill(scratch_.begin(), scratch_.end(), 0.0f);
    const double scale = cfg_.secure.step_scale;
    for (size_t j = 0; j < secure_support_.size(); ++j) {
      scratch_[secure_support_[j]] = static_cast<float>(secure_sum_[j] / secure_count_ * scale);
    }
    if (dp_) {
      // Distributed DP: the sum carries only the survivors' noise shares.
      auto dp = dp_->AccountDistributed(round_, sampling_rate_, secure_count_);
      if (!dp.ok()) return dp.error().WithContext("distributed DP, round " + std::to_string(round_));
      out.dp = *dp;
    }
  } else if (central_dp()) {
    // DP-FedAvg: every update weighs the same (a client's example count is
    // its data); Ingest clipped each into the running sum.
    auto dp = dp_->FinishRound(round_, sampling_rate_, scratch_);
    if (!dp.ok()) return dp.error().WithContext("central DP, round " + std::to_string(round_));
    out.dp = *dp;
  } else {
    for (const auto& [client, u] : pending) inputs.push_back({client, &u.update, u.weight});
    FRUGAL_RETURN_IF_ERROR(aggregator_.Aggregate(inputs, reference ? &*reference : nullptr, scratch_, out.verdicts));
    out.robust_shortfall = RobustBoundShortfall(cfg_.robust, inputs.size());
  }
  if (Status st = server_opt_.Step(scratch_); !st.ok()) {
    return st.error().WithContext("server optimizer, round " + std::to_string(round_));
  }
  for (size_t j = 0; j < correction.size(); ++j) scratch_[j] += correction[j];
  // A frozen coordinate gets no step and owes nothing: the model is set to
  // exactly zero there below, and the broadcast says so.
  for (uint32_t j : frozen) {
    scratch_[j] = 0.0f;
    if (!server_residual_.empty()) server_residual_[j] = 0.0f;
  }
  if (cfg_.pipeline == Pipeline::kDense) {
    for (size_t j = 0; j < model_.size(); ++j) model_[j] += scratch_[j];
    for (uint32_t j : frozen) model_[j] = 0.0f;  // full fp32 models carry it exactly
  } else {
    // STC on the way down: compress the step with server-side error feedback
    // and apply exactly what clients will decode, so chains stay bit-exact.
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> step, EncodeUplink(scratch_, cfg_.broadcast, server_residual_));
    FRUGAL_ASSIGN_OR_RETURN(SparseUpdate sent, DecodeUplink(step, static_cast<uint32_t>(model_.size())));
    for (size_t j = 0; j < sent.indices.size(); ++j) model_[sent.indices[j]] += sent.values[j];
    // Frozen coordinates still non-zero (newly frozen ones, or one a ternary
    // step touched) are zeroed with the step: the chain piece says which.
    std::vector<uint32_t> zeros;
    for (uint32_t j : frozen) {
      if (model_[j] != 0.0f) zeros.push_back(j);
    }
    if (!zeros.empty()) {
      for (uint32_t j : zeros) model_[j] = 0.0f;
      FRUGAL_ASSIGN_OR_RETURN(step, EncodeZeroSet(step, zeros, static_cast<uint32_t>(model_.size())));
    }
    out.broadcast_bytes = step.size();
    steps_.push_back(std::move(step));
    step_rounds_.push_back(round_);
    while (steps_.size() > cfg_.delta_window) {
      steps_.pop_front();
      step_rounds_.pop_front();
      ++steps_base_;
    }
  }
  if (!release_.empty()) {
    const double b = cfg_.release_ema;
    for (size_t j = 0; j < model_.size(); ++j) {
      release_[j] = static_cast<float>(b * release_[j] + (1.0 - b) * model_[j]);
    }
  }
  ++version_;
  out.applied = true;
  out.new_version = version_;
  return out;
}

Result<uint32_t> RoundEngine::ApplyShapeChange(const MlpShapeChange& change) {
  if (open_) return FailedPreconditionError("shape change: round " + std::to_string(round_) + " is open");
  FRUGAL_RETURN_IF_ERROR(CheckShapeChange(change));
  if (change.OldParamCount() != model_.size()) {
    return InvalidArgumentError("shape change is from a model of " + std::to_string(change.OldParamCount()) +
                                " parameters, the global model has " + std::to_string(model_.size()));
  }
  if (!shape_.old_sizes.empty() && (change.old_sizes != shape_.NewSizes() || change.cnn != shape_.cnn)) {
    return InvalidArgumentError("shape change does not start from the model's current layer sizes");
  }
  if (aggregator_.VariableState()) {
    return InvalidArgumentError("shape change: server.robust = \"foolsgold\" keeps per-client histories that "
                                "pruning cannot carry");
  }
  const std::vector<uint32_t> map = ShapeChangeParamMap(change);
  const size_t d = model_.size(), nd = map.size();
  // Model-sized state, block by block: the optimizer's moments, the robust rule's centre after its bound.
  auto project_blocks = [&](std::span<const float> state, size_t head) {
    std::vector<float> out(state.begin(), state.begin() + static_cast<std::ptrdiff_t>(head));
    for (size_t at = head; at + d <= state.size(); at += d) {
      const std::vector<float> part = ApplyParamMap(map, state.subspan(at, d));
      out.insert(out.end(), part.begin(), part.end());
    }
    return out;
  };
  const std::vector<float> robust_state = aggregator_.State();
  RobustAggregator aggregator(nd, cfg_.averaging, cfg_.robust);
  FRUGAL_RETURN_IF_ERROR(aggregator.SetState(project_blocks(robust_state, robust_state.size() % d)));
  ServerOptimizer server_opt(nd, cfg_.server_opt);
  FRUGAL_RETURN_IF_ERROR(server_opt.SetState(project_blocks(server_opt_.state(), 0)));
  MlpShapeChange total = change;
  if (!shape_.old_sizes.empty()) {
    total.old_sizes = shape_.old_sizes;
    for (size_t l = 0; l < total.kept.size(); ++l) {
      for (uint32_t& u : total.kept[l]) u = shape_.kept[l][u];
    }
  }

  model_ = ApplyParamMap(map, model_);
  if (!frozen_.empty()) {
    // Frozen coordinates follow the map: a kept one stays frozen at its new index.
    std::vector<uint32_t> frozen;
    for (size_t n = 0; n < map.size(); ++n) {
      if (std::binary_search(frozen_.begin(), frozen_.end(), map[n])) frozen.push_back(static_cast<uint32_t>(n));
    }
    frozen_ = std::move(frozen);
  }
  if (!server_residual_.empty()) server_residual_ = ApplyParamMap(map, server_residual_);
  if (!release_.empty()) release_ = ApplyParamMap(map, release_);
  aggregator_ = std::move(aggregator);
  server_opt_ = std::move(server_opt);
  scratch_.assign(nd, 0.0f);
  shape_ = std::move(total);
  if (SendsSteps(cfg_.pipeline)) {
    steps_.push_back(EncodeShapeChange(change));
    step_rounds_.push_back(0);
    while (steps_.size() > cfg_.delta_window) {
      steps_.pop_front();
      step_rounds_.pop_front();
      ++steps_base_;
    }
  }
  payload_cache_.clear();
  payload_cache_v4_.clear();
  return ++version_;
}

}  // namespace frugal
