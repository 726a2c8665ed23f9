// libFuzzer target for the SecAgg+ share-message decoders: OpenShareMessage
// (AES-256-GCM, sealed bytes from another client via the server) and
// DecodeShareBundle (the plaintext inside). Input: u8 mode, then the bytes.
// Mode bit 0 clear: a bundle; accepted input must re-encode to the same bytes
// (the format is canonical) and hold only field elements at nonzero points.
// Mode bit 0 set: a sealed message under the seeds' key and context
// (fuzz_secagg_common.h); only an intact seed opens, and what opens is decoded
// as a bundle.
#include <cstdint>
#include <span>
#include <vector>

#include "frugal/privacy/secagg.h"
#include "fuzz_common.h"
#include "fuzz_secagg_common.h"

namespace {

// Decoded as from the fuzz context's pair (the points are recipient + 1).
void CheckBundle(std::span<const uint8_t> bytes) {
  using namespace frugal::privacy;
  const ShareMessageContext& c = frugal::fuzz::kSecAggShareContext;
  auto bundle = DecodeShareBundle(bytes, c.sender, c.recipient);
  if (!bundle.ok()) return;
  frugal::fuzz::Require(bundle->sender == c.sender && bundle->recipient == c.recipient);
  for (const ShamirShare* s : {&bundle->mask_key_share, &bundle->self_seed_share}) {
    frugal::fuzz::Require(s->x == c.recipient + 1 && !s->y.empty() && s->y.size() <= 16);
    for (uint64_t y : s->y) frugal::fuzz::Require(y < kShamirPrime);
  }
  auto again = EncodeShareBundle(*bundle);
  frugal::fuzz::Require(again.ok() && std::vector<uint8_t>(bytes.begin(), bytes.end()) == *again);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal::privacy;
  if (size < 1) return 0;
  const std::span<const uint8_t> bytes(data + 1, size - 1);
  if ((data[0] & 1) == 0) {
    CheckBundle(bytes);
    return 0;
  }
  auto plain = OpenShareMessage(frugal::fuzz::SecAggShareKey(), frugal::fuzz::kSecAggShareContext, bytes);
  if (!plain.ok()) return 0;
  CheckBundle(*plain);
  return 0;
}
