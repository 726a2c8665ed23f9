// Core types <-> wire messages, in one place for both ends: the training and
// codec configuration of a Task, and errors. One table maps frugal::ErrorCode
// to v1::Error::Code and back, so "unavailable: retry" and "invalid: reject"
// mean the same from the round engine to the device.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "frugal/codec/uplink.h"
#include "frugal/core/status.h"
#include "frugal/privacy/secure_aggregation.h"
#include "frugal/privacy/secure_pipeline.h"
#include "frugal/proto/frugal.pb.h"
#include "frugal/round/engine.h"
#include "frugal/train/trainer.h"

namespace frugal {

// Task configuration. `seed` is the client's training seed for the round; it
// comes back as TrainConfig::seed (the TrainConfig's own seed is not sent).
void ToWire(const TrainConfig& train, uint64_t seed, v1::TrainingConfig* out);
TrainConfig FromWire(const v1::TrainingConfig& wire);

// Uplink codec. error_feedback is sent only for a sparse codec (a dense update
// leaves no residual). FromWire refuses (kInvalidArgument, naming the value) a
// value coding this build does not know instead of guessing one.
void ToWire(const UplinkConfig& uplink, bool error_feedback, v1::CodecConfig* out);
Result<UplinkConfig> FromWire(const v1::CodecConfig& wire);
// Whether the client keeps an error-feedback residual for this codec.
bool FromWireErrorFeedback(const v1::CodecConfig& wire);

// A secure round's plan for one client (Task.secagg): the SecAgg+ round,
// the client's position, its ring and what fixes the round's support.
struct SecureTaskPlan {
  privacy::SecureRoundConfig round;
  uint32_t position = 0;
  RingQuantConfig ring;
  uint64_t support_seed = 0;
  double density = 0;
  bool debug_dump = false;  // secure.debug_dump
  std::vector<uint8_t> support_guide{};  // secure.guided: the round's encoded guide (empty: none)
  // secure.derive_guide: > 0 when the client derives the guide from its
  // newest guide_steps steps (support_guide then empty) with these parameters.
  uint32_t guide_steps = 0;
  uint32_t guide_block = 0;
  double guided = 0;
  double guide_decay = 0;
};
void ToWire(const SecureTaskPlan& plan, v1::SecAggPlan* out);
// InvalidArgument naming the field when the round, ring or position do not
// fit together (ValidateSecureRoundConfig, ValidateRingQuantConfig), or the
// distributed-DP fields are out of range (noise_mu outside (0, 2^60], l2_clip
// not > 0, a noise margin outside the ring or under 12 standard deviations of
// one client's noise) or set without distributed_dp, or guide_steps set with
// a support_guide, a guide_block outside 1..65535, guided outside (0, 1] or
// guide_decay outside (0, 1]. ring.noise_mu > 0 marks
// distributed DP in both directions.
Result<SecureTaskPlan> FromWire(const v1::SecAggPlan& wire, uint32_t round);

// The error table. Total in both directions; the wire has fewer codes than
// ErrorCode, so WireErrorCode(FromWireErrorCode(c)) == c holds for the wire
// codes while ErrorCode -> wire -> ErrorCode keeps the policy, not the code
// (kOutOfRange, kDataLoss and kNotFound travel as INVALID_ARGUMENT, ...).
// PROTOCOL_VERSION and DECLINED are wire-only: ProtocolVersionEnvelope sends
// the first, a client's device policy the second; read back they are
// kFailedPrecondition and kUnavailable. Unknown wire values read as kInternal.
v1::Error::Code WireErrorCode(ErrorCode code);
ErrorCode FromWireErrorCode(v1::Error::Code code);

// Reject reasons of the round engine. FromWireReject: nullopt for
// REJECT_UNSPECIFIED and for values this build does not know.
v1::Error::Reject WireReject(RejectReason reason);
std::optional<RejectReason> FromWireReject(v1::Error::Reject reject);

// An Envelope carrying `e`: code through the table, message, round, reject
// and, for older peers and logs, the reject's name in `reason`.
v1::Envelope ErrorEnvelope(const Error& e, uint32_t round = 0, std::optional<RejectReason> reject = {});
// The refusal of a peer that speaks `peer_version` (its Hello or its Envelope):
// code PROTOCOL_VERSION, the message naming both versions.
v1::Envelope ProtocolVersionEnvelope(uint32_t peer_version);
// An Error received from the peer as a core Error (code through the table,
// message as sent); for logs and Status returns.
Error FromWire(const v1::Error& wire);
// "PROTOCOL_VERSION", "UNAVAILABLE", ...; the number for unknown values.
std::string WireErrorCodeName(v1::Error::Code code);

}  // namespace frugal
