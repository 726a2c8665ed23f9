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

void CheckBundle(std::span<const uint8_t> bytes) {
  using namespace frugal::privacy;
  auto bundle = DecodeShareBundle(bytes);
  if (!bundle.ok()) return;
  for (const ShamirShare* s : {&bundle->mask_key_share, &bundle->self_seed_share}) {
    frugal::fuzz::Require(s->x != 0 && !s->y.empty() && s->y.size() <= 16);
    for (uint64_t y : s->y) frugal::fuzz::Require(y < kShamirPrime);
  }
  const std::vector<uint8_t> again = EncodeShareBundle(*bundle);
  frugal::fuzz::Require(std::vector<uint8_t>(bytes.begin(), bytes.end()) == again);
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
