// Framing of the coordinator/client byte stream: each frame is a 4-byte
// big-endian length followed by that many bytes of one serialized Envelope.
// I/O-free: sessions feed whatever chunks the socket gave them and get whole
// messages or an error back, so tests and fuzzers drive this directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/proto/frugal.pb.h"

namespace frugal {

inline constexpr size_t kFramePrefixBytes = 4;
// Default ceiling on one frame's body; a full fp32 CNN model is ~13 MiB.
inline constexpr uint32_t kDefaultMaxFrameBytes = 64u << 20;
// The protocol version this build speaks (frugal.v1.PROTOCOL_VERSION_CURRENT).
inline constexpr uint32_t kProtocolVersion = 2;

// Appends the length prefix and `body` to `out`. kResourceExhausted if the body
// is larger than max_frame_bytes.
Status AppendFrame(std::span<const uint8_t> body, uint32_t max_frame_bytes, std::vector<uint8_t>* out);

// Cuts a byte stream into frame bodies. The declared length is checked against
// the ceiling as soon as the 4 prefix bytes are in, before anything is
// allocated for the body. After an error the decoder stays failed (the stream
// cannot be resynchronised) and every call returns that error. Not thread-safe.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_frame_bytes = kDefaultMaxFrameBytes) : max_(max_frame_bytes) {}

  // Appends bytes received from the stream. Fails (kResourceExhausted) once a
  // declared length exceeds the ceiling.
  Status Feed(std::span<const uint8_t> bytes);
  // The next complete frame body, or nullopt when more bytes are needed.
  Result<std::optional<std::vector<uint8_t>>> Next();
  // Call at end of stream: kDataLoss if a partial frame is buffered.
  Status Finish() const;

  size_t buffered() const { return buf_.size() - pos_; }
  bool failed() const { return error_.has_value(); }
  uint32_t max_frame_bytes() const { return max_; }

 private:
  Status Fail(uint32_t declared);

  uint32_t max_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;   // start of the unconsumed bytes in buf_
  size_t scan_ = 0;  // start of the first incomplete frame in buf_ (>= pos_)
  std::optional<Error> error_;
};

// Serializes `env` (its protocol_version set to kProtocolVersion) and frames it.
Result<std::vector<uint8_t>> EncodeEnvelope(const v1::Envelope& env, uint32_t max_frame_bytes = kDefaultMaxFrameBytes);

// Parses one frame body: a valid Envelope of this protocol version with a body
// set. kInvalidArgument naming the defect otherwise; never throws. When the
// body is an Envelope of another protocol version, *foreign_version (if given)
// is set to that version, so the caller can answer or stop with
// PROTOCOL_VERSION instead of treating the peer as malformed.
Result<v1::Envelope> ParseEnvelope(std::span<const uint8_t> body, std::optional<uint32_t>* foreign_version = nullptr);

// FrameDecoder + ParseEnvelope: whole Envelopes out of a byte stream. A frame
// that does not parse fails the decoder like an oversize length does.
class EnvelopeDecoder {
 public:
  explicit EnvelopeDecoder(uint32_t max_frame_bytes = kDefaultMaxFrameBytes) : frames_(max_frame_bytes) {}

  Status Feed(std::span<const uint8_t> bytes) {
    if (error_) return *error_;
    return frames_.Feed(bytes);
  }
  // The next complete Envelope, or nullopt when more bytes are needed.
  Result<std::optional<v1::Envelope>> Next();
  // Call at end of stream: the decoder's error, or kDataLoss if a partial frame is buffered.
  Status Finish() const {
    if (error_) return *error_;
    return frames_.Finish();
  }
  size_t buffered() const { return frames_.buffered(); }
  // Set when the decoder failed on an Envelope of another protocol version:
  // that version (the caller answers PROTOCOL_VERSION rather than a generic error).
  std::optional<uint32_t> foreign_version() const { return foreign_version_; }

 private:
  FrameDecoder frames_;
  std::optional<Error> error_;
  std::optional<uint32_t> foreign_version_;
};

// Routes libprotobuf's own log lines (e.g. "invalid UTF-8" on every malformed
// string a peer sends) to nowhere: parse failures are already returned as
// Errors and logged once by the session, and a hostile peer must not be able
// to flood stderr. Process-wide; call once at start-up.
void SilenceProtobufLogs();

// Short name of the Envelope's body ("hello", "update", ...), "empty" if unset; for logs.
const char* EnvelopeKindName(const v1::Envelope& env);

}  // namespace frugal
