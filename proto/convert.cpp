#include "frugal/proto/convert.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "frugal/proto/frame.h"

namespace frugal {
namespace {

struct ErrorRow {
  ErrorCode core;
  v1::Error::Code wire;
};

// The one table. A core code is sent as the wire code of its first row; a wire
// code reads back as the core code of its first row.
constexpr ErrorRow kErrorTable[] = {
    {ErrorCode::kInvalidArgument, v1::Error::INVALID_ARGUMENT},
    {ErrorCode::kFailedPrecondition, v1::Error::FAILED_PRECONDITION},
    {ErrorCode::kResourceExhausted, v1::Error::RESOURCE_EXHAUSTED},
    {ErrorCode::kUnauthenticated, v1::Error::UNAUTHENTICATED},
    {ErrorCode::kPermissionDenied, v1::Error::PERMISSION_DENIED},
    {ErrorCode::kUnavailable, v1::Error::UNAVAILABLE},
    {ErrorCode::kInternal, v1::Error::INTERNAL},
    // Core codes the wire has no word for travel as the code of the same
    // policy: bad input is rejected, a duplicate is a precondition, a timeout
    // is retried.
    {ErrorCode::kOutOfRange, v1::Error::INVALID_ARGUMENT},
    {ErrorCode::kDataLoss, v1::Error::INVALID_ARGUMENT},
    {ErrorCode::kNotFound, v1::Error::INVALID_ARGUMENT},
    {ErrorCode::kAlreadyExists, v1::Error::FAILED_PRECONDITION},
    {ErrorCode::kDeadlineExceeded, v1::Error::UNAVAILABLE},
    // Wire-only codes, read back as the core code of their policy.
    {ErrorCode::kFailedPrecondition, v1::Error::PROTOCOL_VERSION},
    {ErrorCode::kUnavailable, v1::Error::DECLINED},
};

struct RejectRow {
  RejectReason core;
  v1::Error::Reject wire;
};

constexpr RejectRow kRejectTable[] = {
    {RejectReason::kRoundClosed, v1::Error::REJECT_ROUND_CLOSED},
    {RejectReason::kStaleRound, v1::Error::REJECT_STALE_ROUND},
    {RejectReason::kNotSelected, v1::Error::REJECT_NOT_SELECTED},
    {RejectReason::kDuplicate, v1::Error::REJECT_DUPLICATE},
    {RejectReason::kStaleBase, v1::Error::REJECT_STALE_BASE},
    {RejectReason::kMalformed, v1::Error::REJECT_MALFORMED},
    {RejectReason::kWrongDimension, v1::Error::REJECT_WRONG_DIMENSION},
    {RejectReason::kNonFinite, v1::Error::REJECT_NON_FINITE},
    {RejectReason::kBadWeight, v1::Error::REJECT_BAD_WEIGHT},
    {RejectReason::kTooDense, v1::Error::REJECT_TOO_DENSE},
};

}  // namespace

void ToWire(const TrainConfig& train, uint64_t seed, v1::TrainingConfig* out) {
  out->set_epochs(train.epochs);
  out->set_batch_size(train.batch_size);
  out->set_learning_rate(train.learning_rate);
  out->set_momentum(train.momentum);
  out->set_prox_mu(train.prox_mu);
  out->set_weight_decay(train.weight_decay);
  out->set_seed(seed);
}

TrainConfig FromWire(const v1::TrainingConfig& wire) {
  TrainConfig t;
  t.epochs = wire.epochs();
  t.batch_size = wire.batch_size();
  t.learning_rate = wire.learning_rate();
  t.momentum = wire.momentum();
  t.prox_mu = wire.prox_mu();
  t.weight_decay = wire.weight_decay();
  t.seed = wire.seed();
  return t;
}

void ToWire(const UplinkConfig& uplink, bool error_feedback, v1::CodecConfig* out) {
  out->set_dense(uplink.dense);
  out->set_density(uplink.density);
  switch (uplink.values) {
    case ValueCoding::kTernary: out->set_values(v1::CodecConfig::VALUES_TERNARY); break;
    case ValueCoding::kInt8: out->set_values(v1::CodecConfig::VALUES_INT8); break;
    case ValueCoding::kFp16: out->set_values(v1::CodecConfig::VALUES_FP16); break;
    case ValueCoding::kFp32: out->set_values(v1::CodecConfig::VALUES_FP32); break;
  }
  out->set_exact_topk(uplink.exact_topk);
  out->set_try_zstd(uplink.try_zstd);
  out->set_error_feedback(error_feedback && !uplink.dense);
}

Result<UplinkConfig> FromWire(const v1::CodecConfig& wire) {
  UplinkConfig u;
  u.dense = wire.dense();
  u.density = wire.density();
  switch (wire.values()) {
    case v1::CodecConfig::VALUES_TERNARY: u.values = ValueCoding::kTernary; break;
    case v1::CodecConfig::VALUES_INT8: u.values = ValueCoding::kInt8; break;
    case v1::CodecConfig::VALUES_FP16: u.values = ValueCoding::kFp16; break;
    case v1::CodecConfig::VALUES_FP32: u.values = ValueCoding::kFp32; break;
    default:
      return InvalidArgumentError("codec value coding " + std::to_string(static_cast<int>(wire.values())) +
                                  " is unknown to this peer");
  }
  u.exact_topk = wire.exact_topk();
  u.try_zstd = wire.try_zstd();
  return u;
}

bool FromWireErrorFeedback(const v1::CodecConfig& wire) { return wire.error_feedback() && !wire.dense(); }

v1::Error::Code WireErrorCode(ErrorCode code) {
  for (const ErrorRow& row : kErrorTable) {
    if (row.core == code) return row.wire;
  }
  return v1::Error::INTERNAL;  // unreachable while the table is total (tested)
}

ErrorCode FromWireErrorCode(v1::Error::Code code) {
  for (const ErrorRow& row : kErrorTable) {
    if (row.wire == code) return row.core;
  }
  return ErrorCode::kInternal;  // CODE_UNSPECIFIED or a code from a newer peer
}

v1::Error::Reject WireReject(RejectReason reason) {
  for (const RejectRow& row : kRejectTable) {
    if (row.core == reason) return row.wire;
  }
  return v1::Error::REJECT_UNSPECIFIED;
}

std::optional<RejectReason> FromWireReject(v1::Error::Reject reject) {
  for (const RejectRow& row : kRejectTable) {
    if (row.wire == reject) return row.core;
  }
  return std::nullopt;
}

v1::Envelope ErrorEnvelope(const Error& e, uint32_t round, std::optional<RejectReason> reject) {
  v1::Envelope env;
  v1::Error* w = env.mutable_error();
  w->set_code(WireErrorCode(e.code()));
  w->set_message(e.message());
  w->set_round(round);
  if (reject) {
    w->set_reject(WireReject(*reject));
    w->set_reason(std::string(RejectReasonName(*reject)));
  }
  return env;
}

v1::Envelope ProtocolVersionEnvelope(uint32_t peer_version) {
  v1::Envelope env;
  v1::Error* w = env.mutable_error();
  w->set_code(v1::Error::PROTOCOL_VERSION);
  w->set_message("the peer speaks protocol " + std::to_string(peer_version) + ", this one speaks " +
                 std::to_string(kProtocolVersion));
  return env;
}

Error FromWire(const v1::Error& wire) { return Error(FromWireErrorCode(wire.code()), wire.message()); }

std::string WireErrorCodeName(v1::Error::Code code) {
  if (v1::Error::Code_IsValid(code)) return v1::Error::Code_Name(code);
  return std::to_string(static_cast<int>(code));
}

void ToWire(const SecureTaskPlan& plan, v1::SecAggPlan* out) {
  out->set_session(plan.round.session_id);
  out->set_clients(plan.round.clients);
  out->set_degree(plan.round.degree);
  out->set_threshold(plan.round.threshold);
  out->set_bits(static_cast<uint32_t>(plan.round.bits));
  out->set_length(plan.round.length);
  out->set_position(plan.position);
  out->set_clip(plan.ring.clip);
  out->set_max_summands(plan.ring.max_summands);
  out->set_support_seed(plan.support_seed);
  out->set_density(plan.density);
  out->set_debug_dump(plan.debug_dump);
  out->set_identity(plan.round.identity);
  if (!plan.support_guide.empty()) {
    out->set_support_guide(reinterpret_cast<const char*>(plan.support_guide.data()), plan.support_guide.size());
  }
  if (plan.guide_steps > 0) {
    out->set_guide_steps(plan.guide_steps);
    out->set_guide_block(plan.guide_block);
    out->set_guided(plan.guided);
    out->set_guide_decay(plan.guide_decay);
  }
  if (plan.ring.noise_mu > 0) {
    out->set_distributed_dp(true);
    out->set_l2_clip(plan.ring.l2_clip);
    out->set_noise_mu(plan.ring.noise_mu);
    out->set_noise_margin(plan.ring.noise_margin);
  }
}

namespace {

// Task.secagg's distributed-DP fields: all set (and in range) with
// distributed_dp, all zero without it.
Status CheckDistributedDp(const v1::SecAggPlan& wire, const RingQuantConfig& ring) {
  auto bad = [](const std::string& what) { return InvalidArgumentError("Task.secagg: " + what); };
  if (!wire.distributed_dp()) {
    if (wire.l2_clip() != 0 || wire.noise_mu() != 0 || wire.noise_margin() != 0) {
      return bad("l2_clip, noise_mu and noise_margin are set without distributed_dp");
    }
    return OkStatus();
  }
  if (!(std::isfinite(wire.l2_clip()) && wire.l2_clip() > 0)) {
    return bad("distributed DP l2_clip " + std::to_string(wire.l2_clip()) + " is not finite and > 0");
  }
  // A Poisson draw of a larger mean could leave int64.
  if (!(std::isfinite(wire.noise_mu()) && wire.noise_mu() > 0 && wire.noise_mu() <= 0x1p60)) {
    return bad("distributed DP noise_mu " + std::to_string(wire.noise_mu()) + " outside (0, 2^60]");
  }
  const int64_t top = ring.bits >= 2 && ring.bits <= 62 ? (int64_t{1} << (ring.bits - 1)) - 1 : 0;
  if (wire.noise_margin() <= 0 || wire.noise_margin() >= top) {
    return bad("distributed DP noise_margin " + std::to_string(wire.noise_margin()) + " outside 1.." +
               std::to_string(top - 1) + " for a " + std::to_string(ring.bits) + "-bit ring");
  }
  // One client's noise must fit the margin many times over, or the sum cannot decode.
  if (std::sqrt(2 * wire.noise_mu()) * 12 > static_cast<double>(wire.noise_margin())) {
    return bad("distributed DP noise_margin " + std::to_string(wire.noise_margin()) +
               " is under 12 standard deviations of one client's noise (noise_mu " + std::to_string(wire.noise_mu()) +
               "): the ring is too small for the noise");
  }
  return OkStatus();
}

}  // namespace

Result<SecureTaskPlan> FromWire(const v1::SecAggPlan& wire, uint32_t round) {
  SecureTaskPlan p;
  p.round = privacy::SecureRoundConfig{.session_id = wire.session(), .round = round, .clients = wire.clients(),
                                       .degree = wire.degree(), .threshold = wire.threshold(),
                                       .bits = static_cast<int>(std::min<uint32_t>(wire.bits(), 64)),
                                       .length = wire.length(), .identity = wire.identity()};
  p.position = wire.position();
  p.ring = RingQuantConfig{.bits = p.round.bits, .clip = wire.clip(), .max_summands = wire.max_summands()};
  p.support_seed = wire.support_seed();
  p.density = wire.density();
  p.debug_dump = wire.debug_dump();
  // Decoded by the client against its model's size (DecodeSupportGuide), which the plan does not carry.
  p.support_guide.assign(wire.support_guide().begin(), wire.support_guide().end());
  if (wire.guide_steps() > 0) {
    auto bad = [](const std::string& what) { return InvalidArgumentError("Task.secagg: " + what); };
    if (!p.support_guide.empty()) return bad("guide_steps is set beside a support_guide");
    if (wire.guide_block() == 0 || wire.guide_block() > 0xffff) {
      return bad("guide_block " + std::to_string(wire.guide_block()) + " outside 1..65535");
    }
    if (!(wire.guided() > 0 && wire.guided() <= 1)) return bad("guided " + std::to_string(wire.guided()) + " outside (0, 1]");
    if (!(wire.guide_decay() > 0 && wire.guide_decay() <= 1)) {
      return bad("guide_decay " + std::to_string(wire.guide_decay()) + " outside (0, 1]");
    }
    p.guide_steps = wire.guide_steps();
    p.guide_block = wire.guide_block();
    p.guided = wire.guided();
    p.guide_decay = wire.guide_decay();
  } else if (wire.guide_block() != 0 || wire.guided() != 0 || wire.guide_decay() != 0) {
    return InvalidArgumentError("Task.secagg: guide_block, guided and guide_decay are set without guide_steps");
  }
  if (Status st = privacy::ValidateSecureRoundConfig(p.round); !st.ok()) return st.error().WithContext("Task.secagg");
  FRUGAL_RETURN_IF_ERROR(CheckDistributedDp(wire, p.ring));
  if (wire.distributed_dp()) {
    p.ring.l2_clip = wire.l2_clip();
    p.ring.noise_mu = wire.noise_mu();
    p.ring.noise_margin = wire.noise_margin();
  }
  if (Status st = ValidateRingQuantConfig(p.ring); !st.ok()) return st.error().WithContext("Task.secagg");
  if (p.position >= p.round.clients) {
    return InvalidArgumentError("Task.secagg: position " + std::to_string(p.position) + " outside 0.." +
                                std::to_string(p.round.clients - 1));
  }
  if (!(p.density > 0 && p.density <= 1)) {
    return InvalidArgumentError("Task.secagg: density " + std::to_string(p.density) + " outside (0, 1]");
  }
  return p;
}

}  // namespace frugal
