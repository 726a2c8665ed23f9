#include "frugal/proto/frame.h"

#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <string>

namespace frugal {
namespace {

uint32_t ReadBigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

Status AppendFrame(std::span<const uint8_t> body, uint32_t max_frame_bytes, std::vector<uint8_t>* out) {
  if (body.size() > max_frame_bytes) {
    return ResourceExhaustedError("frame body of " + std::to_string(body.size()) + " bytes exceeds the " +
                                  std::to_string(max_frame_bytes) + "-byte limit");
  }
  const auto n = static_cast<uint32_t>(body.size());
  const uint8_t prefix[kFramePrefixBytes] = {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                                             static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
  out->insert(out->end(), prefix, prefix + kFramePrefixBytes);
  out->insert(out->end(), body.begin(), body.end());
  return OkStatus();
}

Status FrameDecoder::Fail(uint32_t declared) {
  error_ = ResourceExhaustedError("frame declares " + std::to_string(declared) + " bytes, over the " +
                                  std::to_string(max_) + "-byte limit");
  return *error_;
}

Status FrameDecoder::Feed(std::span<const uint8_t> bytes) {
  if (error_) return *error_;
  // Bytes are appended one frame piece at a time, so each prefix is checked
  // before a single byte of its body is stored: a hostile length costs nothing.
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t have = buf_.size() - scan_;
    size_t take;
    if (have < kFramePrefixBytes) {
      take = std::min(kFramePrefixBytes - have, bytes.size() - i);
    } else {
      const size_t frame = kFramePrefixBytes + ReadBigEndian32(buf_.data() + scan_);
      take = std::min(frame - have, bytes.size() - i);
    }
    buf_.insert(buf_.end(), bytes.begin() + static_cast<std::ptrdiff_t>(i),
                bytes.begin() + static_cast<std::ptrdiff_t>(i + take));
    i += take;
    if (buf_.size() - scan_ >= kFramePrefixBytes) {
      const uint32_t len = ReadBigEndian32(buf_.data() + scan_);
      if (len > max_) return Fail(len);
      if (buf_.size() - scan_ == kFramePrefixBytes + len) scan_ = buf_.size();  // frame complete
    }
  }
  return OkStatus();
}

Result<std::optional<std::vector<uint8_t>>> FrameDecoder::Next() {
  if (error_) return *error_;
  if (buffered() < kFramePrefixBytes) return std::optional<std::vector<uint8_t>>();
  const uint32_t len = ReadBigEndian32(buf_.data() + pos_);
  if (len > max_) return Fail(len);
  if (buffered() - kFramePrefixBytes < len) return std::optional<std::vector<uint8_t>>();
  const auto* begin = buf_.data() + pos_ + kFramePrefixBytes;
  std::vector<uint8_t> body(begin, begin + len);
  pos_ += kFramePrefixBytes + len;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = scan_ = 0;
  } else if (pos_ > (1u << 20) && pos_ > buf_.size() / 2) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    scan_ -= pos_;
    pos_ = 0;
  }
  return std::optional<std::vector<uint8_t>>(std::move(body));
}

Status FrameDecoder::Finish() const {
  if (error_) return *error_;
  if (buffered() != 0) {
    return DataLossError("stream ended inside a frame (" + std::to_string(buffered()) + " bytes of a partial frame)");
  }
  return OkStatus();
}

Result<std::vector<uint8_t>> EncodeEnvelope(const v1::Envelope& env, uint32_t max_frame_bytes) {
  v1::Envelope copy = env;
  copy.set_protocol_version(kProtocolVersion);
  std::string bytes;
  if (!copy.SerializeToString(&bytes)) return InternalError("cannot serialize a " + std::string(EnvelopeKindName(env)));
  std::vector<uint8_t> out;
  out.reserve(kFramePrefixBytes + bytes.size());
  FRUGAL_RETURN_IF_ERROR(AppendFrame(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
                                     max_frame_bytes, &out));
  return out;
}

Result<v1::Envelope> ParseEnvelope(std::span<const uint8_t> body, std::optional<uint32_t>* foreign_version) {
  v1::Envelope env;
  if (body.size() > static_cast<size_t>(INT32_MAX) || !env.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return InvalidArgumentError("frame of " + std::to_string(body.size()) + " bytes is not a valid Envelope");
  }
  if (env.protocol_version() != kProtocolVersion) {
    if (foreign_version != nullptr) *foreign_version = env.protocol_version();
    return InvalidArgumentError("protocol version " + std::to_string(env.protocol_version()) + " (this peer speaks " +
                                std::to_string(kProtocolVersion) + ")");
  }
  if (env.body_case() == v1::Envelope::BODY_NOT_SET) return InvalidArgumentError("Envelope carries no message");
  return env;
}

Result<std::optional<v1::Envelope>> EnvelopeDecoder::Next() {
  if (error_) return *error_;
  auto frame = frames_.Next();
  if (!frame.ok()) return frame.error();
  if (!frame->has_value()) return std::optional<v1::Envelope>();
  auto env = ParseEnvelope(**frame, &foreign_version_);
  if (!env.ok()) {
    error_ = env.error();
    return *error_;
  }
  return std::optional<v1::Envelope>(std::move(*env));
}

void SilenceProtobufLogs() { google::protobuf::SetLogHandler(nullptr); }

const char* EnvelopeKindName(const v1::Envelope& env) {
  switch (env.body_case()) {
    case v1::Envelope::kHello: return "hello";
    case v1::Envelope::kRegister: return "register";
    case v1::Envelope::kTask: return "task";
    case v1::Envelope::kModel: return "model";
    case v1::Envelope::kUpdate: return "update";
    case v1::Envelope::kEvalTask: return "eval_task";
    case v1::Envelope::kEvalResult: return "eval_result";
    case v1::Envelope::kHeartbeat: return "heartbeat";
    case v1::Envelope::kError: return "error";
    case v1::Envelope::kBye: return "bye";
    case v1::Envelope::kSecagg: return "secagg";
    case v1::Envelope::BODY_NOT_SET: break;
  }
  return "empty";
}

}  // namespace frugal
