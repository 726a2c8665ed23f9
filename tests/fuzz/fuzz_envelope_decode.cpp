// libFuzzer target for the coordinator/client stream decoder (FrameDecoder +
// ParseEnvelope): any bytes, fed in any chunking, must give envelopes of this
// protocol version with a body set, or an error after which the decoder stays failed.
// A secure round's parts of a decoded envelope go through their own checks as
// the peers run them: Task.secagg through FromWire, a SecAgg body through
// DecodeSecureMessage (fuzzed alone by fuzz_secagg_messages).
#include <cstdint>
#include <cstdlib>
#include <span>

#include "frugal/codec/shared_support.h"
#include "frugal/privacy/secure_aggregation.h"
#include "frugal/proto/convert.h"
#include "frugal/proto/frame.h"

namespace {

void Require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  frugal::SilenceProtobufLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal;
  if (size == 0) return 0;
  // First byte picks the chunk size, so splits inside prefixes and bodies are explored.
  const size_t chunk = 1 + data[0] % 17;
  const std::span<const uint8_t> in(data + 1, size - 1);
  EnvelopeDecoder dec(1u << 16);
  bool failed = false;
  for (size_t i = 0; i < in.size() && !failed; i += chunk) {
    if (!dec.Feed(in.subspan(i, std::min(chunk, in.size() - i))).ok()) {
      failed = true;
      break;
    }
    for (;;) {
      auto e = dec.Next();
      if (!e.ok()) {
        failed = true;
        break;
      }
      if (!e->has_value()) break;
      Require((*e)->protocol_version() == kProtocolVersion);
      Require((*e)->body_case() != v1::Envelope::BODY_NOT_SET);
      if ((*e)->has_task() && (*e)->task().has_secagg()) {
        auto plan = FromWire((*e)->task().secagg(), (*e)->task().round());
        Require(!plan.ok() || plan->position < plan->round.clients);
        // Distributed DP's fields come all in range or not at all.
        Require(!plan.ok() || (plan->ring.noise_mu > 0) == (plan->ring.l2_clip > 0));
        Require(!plan.ok() || plan->ring.noise_mu == 0 || (plan->ring.noise_margin > 0 && plan->ring.noise_mu <= 0x1p60));
        // The guide is decoded by the client against its model's size (any size will do here).
        if (plan.ok() && !plan->support_guide.empty()) {
          auto guide = DecodeSupportGuide(plan->support_guide, 1000, plan->round.length);
          Require(!guide.ok() || guide->size() <= plan->round.length);
        }
      }
      if ((*e)->has_secagg()) {
        const std::string& body = (*e)->secagg().body();
        (void)privacy::DecodeSecureMessage(
            std::span(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
      }
      // A decoded envelope re-encodes to a frame that decodes again.
      auto again = EncodeEnvelope(**e, 1u << 20);
      Require(again.ok());
      EnvelopeDecoder dec2(1u << 20);
      Require(dec2.Feed(*again).ok());
      auto e2 = dec2.Next();
      Require(e2.ok() && e2->has_value());
    }
  }
  if (failed) {
    Require(!dec.Next().ok());
    Require(!dec.Finish().ok());
  }
  Require(dec.buffered() <= in.size());
  return 0;
}
