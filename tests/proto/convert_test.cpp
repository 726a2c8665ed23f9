// Core types <-> wire messages: every conversion round-trips, the error table
// is total both ways and keeps each code's policy, unknown wire values are
// refused or read as internal instead of guessed.
#include "frugal/proto/convert.h"

#include <doctest/doctest.h>

#include <string>

#include "frugal/proto/frame.h"

namespace frugal {
namespace {

constexpr ErrorCode kAllCodes[] = {
    ErrorCode::kInvalidArgument, ErrorCode::kOutOfRange,        ErrorCode::kDataLoss,
    ErrorCode::kNotFound,        ErrorCode::kAlreadyExists,     ErrorCode::kFailedPrecondition,
    ErrorCode::kResourceExhausted, ErrorCode::kUnauthenticated, ErrorCode::kPermissionDenied,
    ErrorCode::kUnavailable,     ErrorCode::kDeadlineExceeded,  ErrorCode::kInternal,
};

constexpr RejectReason kAllReasons[] = {
    RejectReason::kRoundClosed, RejectReason::kStaleRound,     RejectReason::kNotSelected,
    RejectReason::kDuplicate,   RejectReason::kStaleBase,      RejectReason::kMalformed,
    RejectReason::kWrongDimension, RejectReason::kNonFinite,   RejectReason::kBadWeight,
    RejectReason::kTooDense,
};

}  // namespace

TEST_SUITE("proto") {
  TEST_CASE("a training configuration round-trips through the wire with the round's seed") {
    TrainConfig t;
    t.epochs = 3;
    t.batch_size = 17;
    t.learning_rate = 0.0375f;
    t.momentum = 0.9f;
    t.prox_mu = 0.01f;
    t.weight_decay = 1e-4f;
    t.seed = 5;  // not sent: the round's seed is
    v1::TrainingConfig wire;
    ToWire(t, 0xfeedbeefcafe1234ull, &wire);
    const TrainConfig back = FromWire(wire);
    CHECK(back.epochs == 3);
    CHECK(back.batch_size == 17);
    CHECK(back.learning_rate == t.learning_rate);
    CHECK(back.momentum == t.momentum);
    CHECK(back.prox_mu == t.prox_mu);
    CHECK(back.weight_decay == t.weight_decay);
    CHECK(back.seed == 0xfeedbeefcafe1234ull);
  }

  TEST_CASE("every uplink codec configuration round-trips, error feedback only for a sparse codec") {
    for (ValueCoding v : {ValueCoding::kTernary, ValueCoding::kInt8, ValueCoding::kFp16, ValueCoding::kFp32}) {
      for (bool dense : {false, true}) {
        UplinkConfig u{.dense = dense, .density = 0.0213, .values = v, .exact_topk = false, .try_zstd = true};
        v1::CodecConfig wire;
        ToWire(u, /*error_feedback=*/true, &wire);
        auto back = FromWire(wire);
        REQUIRE(back.ok());
        CHECK(back->dense == dense);
        CHECK(back->density == 0.0213);
        CHECK(back->values == v);
        CHECK_FALSE(back->exact_topk);
        CHECK(back->try_zstd);
        CHECK(FromWireErrorFeedback(wire) == !dense);
        ToWire(u, /*error_feedback=*/false, &wire);
        CHECK_FALSE(FromWireErrorFeedback(wire));
      }
    }
  }

  TEST_CASE("an unknown value coding on the wire is refused, naming the value, not read as ternary") {
    v1::CodecConfig wire;
    wire.set_density(0.1);
    wire.set_values(static_cast<v1::CodecConfig::Values>(42));
    auto back = FromWire(wire);
    REQUIRE_FALSE(back.ok());
    CHECK(back.error().code() == ErrorCode::kInvalidArgument);
    CHECK(back.error().message().find("42") != std::string::npos);
  }

  TEST_CASE("the error table is total and keeps each code's policy") {
    for (ErrorCode c : kAllCodes) {
      const v1::Error::Code wire = WireErrorCode(c);
      CHECK(wire != v1::Error::CODE_UNSPECIFIED);
      CHECK(wire != v1::Error::PROTOCOL_VERSION);
      CHECK(wire != v1::Error::DECLINED);
      // Sent and read back, a code may lose its detail but never its policy.
      CHECK(WireErrorCode(FromWireErrorCode(wire)) == wire);
    }
    // Codes the wire has a word for come back as themselves.
    for (ErrorCode c : {ErrorCode::kInvalidArgument, ErrorCode::kFailedPrecondition, ErrorCode::kResourceExhausted,
                        ErrorCode::kUnauthenticated, ErrorCode::kPermissionDenied, ErrorCode::kUnavailable,
                        ErrorCode::kInternal}) {
      CHECK(FromWireErrorCode(WireErrorCode(c)) == c);
    }
    CHECK(WireErrorCode(ErrorCode::kFailedPrecondition) == v1::Error::FAILED_PRECONDITION);
    CHECK(WireErrorCode(ErrorCode::kInvalidArgument) == v1::Error::INVALID_ARGUMENT);
    CHECK(WireErrorCode(ErrorCode::kUnavailable) == v1::Error::UNAVAILABLE);
    CHECK(WireErrorCode(ErrorCode::kDeadlineExceeded) == v1::Error::UNAVAILABLE);
    CHECK(WireErrorCode(ErrorCode::kDataLoss) == v1::Error::INVALID_ARGUMENT);
    // Every wire code reads as some core code; the wire-only ones by policy.
    for (int w = v1::Error::Code_MIN; w <= v1::Error::Code_MAX; ++w) {
      (void)FromWireErrorCode(static_cast<v1::Error::Code>(w));
    }
    CHECK(FromWireErrorCode(v1::Error::PROTOCOL_VERSION) == ErrorCode::kFailedPrecondition);
    CHECK(FromWireErrorCode(v1::Error::DECLINED) == ErrorCode::kUnavailable);
    CHECK(FromWireErrorCode(v1::Error::CODE_UNSPECIFIED) == ErrorCode::kInternal);
    CHECK(FromWireErrorCode(static_cast<v1::Error::Code>(99)) == ErrorCode::kInternal);
  }

  TEST_CASE("every reject reason round-trips and an unknown one reads as none") {
    for (RejectReason r : kAllReasons) {
      const v1::Error::Reject wire = WireReject(r);
      CHECK(wire != v1::Error::REJECT_UNSPECIFIED);
      REQUIRE(FromWireReject(wire).has_value());
      CHECK(*FromWireReject(wire) == r);
    }
    CHECK_FALSE(FromWireReject(v1::Error::REJECT_UNSPECIFIED).has_value());
    CHECK_FALSE(FromWireReject(static_cast<v1::Error::Reject>(77)).has_value());
  }

  TEST_CASE("an error envelope carries the engine's code through the table, the reject and its name") {
    // The engine refuses a stale update with FailedPrecondition: the wire says so.
    v1::Envelope env = ErrorEnvelope(FailedPreconditionError("update for round 3, round 4 is open"), 3,
                                     RejectReason::kStaleRound);
    REQUIRE(env.has_error());
    CHECK(env.error().code() == v1::Error::FAILED_PRECONDITION);
    CHECK(env.error().message() == "update for round 3, round 4 is open");
    CHECK(env.error().round() == 3);
    CHECK(env.error().reject() == v1::Error::REJECT_STALE_ROUND);
    CHECK(env.error().reason() == "stale_round");
    const Error back = FromWire(env.error());
    CHECK(back.code() == ErrorCode::kFailedPrecondition);
    CHECK(back.message() == "update for round 3, round 4 is open");

    env = ErrorEnvelope(InvalidArgumentError("NaN at 7"), 2, RejectReason::kNonFinite);
    CHECK(env.error().code() == v1::Error::INVALID_ARGUMENT);
    CHECK(env.error().reject() == v1::Error::REJECT_NON_FINITE);

    env = ErrorEnvelope(Error(ErrorCode::kUnauthenticated, "no"));
    CHECK(env.error().code() == v1::Error::UNAUTHENTICATED);
    CHECK(env.error().reject() == v1::Error::REJECT_UNSPECIFIED);
    CHECK(env.error().reason().empty());
    CHECK(env.error().round() == 0);
  }

  TEST_CASE("a protocol version refusal names both versions and survives framing") {
    const v1::Envelope env = ProtocolVersionEnvelope(1);
    REQUIRE(env.has_error());
    CHECK(env.error().code() == v1::Error::PROTOCOL_VERSION);
    CHECK(env.error().message().find("protocol 1") != std::string::npos);
    CHECK(env.error().message().find(std::to_string(kProtocolVersion)) != std::string::npos);
    CHECK(WireErrorCodeName(v1::Error::PROTOCOL_VERSION) == "PROTOCOL_VERSION");
    CHECK(WireErrorCodeName(static_cast<v1::Error::Code>(99)) == "99");
    auto frame = EncodeEnvelope(env);
    REQUIRE(frame.ok());
    EnvelopeDecoder dec;
    REQUIRE(dec.Feed(*frame).ok());
    auto got = dec.Next();
    REQUIRE(got.ok());
    REQUIRE(got->has_value());
    CHECK((*got)->error().code() == v1::Error::PROTOCOL_VERSION);
  }

  TEST_CASE("the decoder reports the version of an envelope from another protocol") {
    v1::Envelope env;
    env.set_protocol_version(kProtocolVersion + 1);
    env.mutable_heartbeat()->set_sequence(1);
    const std::string body = env.SerializeAsString();
    std::vector<uint8_t> frame;
    REQUIRE(AppendFrame(std::span(reinterpret_cast<const uint8_t*>(body.data()), body.size()), 1024, &frame).ok());
    EnvelopeDecoder dec;
    REQUIRE(dec.Feed(frame).ok());
    CHECK_FALSE(dec.Next().ok());
    REQUIRE(dec.foreign_version().has_value());
    CHECK(*dec.foreign_version() == kProtocolVersion + 1);

    // A frame that is not an Envelope at all is malformed, not foreign.
    EnvelopeDecoder junk;
    std::vector<uint8_t> bad;
    const uint8_t garbage[] = {0xff, 0xff, 0xff};
    REQUIRE(AppendFrame(garbage, 1024, &bad).ok());
    REQUIRE(junk.Feed(bad).ok());
    CHECK_FALSE(junk.Next().ok());
    CHECK_FALSE(junk.foreign_version().has_value());
  }
}

}  // namespace frugal
