// The key and context of fuzz_secagg_share's sealed seeds, shared with the
// corpus generator so that the seeds open and the fuzzer reaches the bundle
// decoder behind the AES-GCM tag.
#pragma once

#include <cstddef>
#include <cstdint>

#include "frugal/privacy/identity.h"
#include "frugal/privacy/secagg.h"
#include "frugal/privacy/secure_aggregation.h"

namespace frugal::fuzz {

inline privacy::Key256 SecAggShareKey() {
  privacy::Key256 k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0x5a ^ i);
  return k;
}

inline constexpr privacy::ShareMessageContext kSecAggShareContext{0x0123456789abcdefULL, 7, 3, 9};

// The round every fuzz_secagg_messages seed is written for; modes 3 and 4 bind
// keys to identities from the simulated CA of SecAggFuzzCaSeed, client at
// position p named 100 + p.
inline privacy::SecureRoundConfig SecAggFuzzConfig(bool identity = false) {
  return {.session_id = 0x0123456789abcdefULL, .round = 7, .clients = 10, .degree = 6, .threshold = 2, .bits = 20,
          .length = 16, .identity = identity};
}
inline constexpr uint64_t kSecAggFuzzCaSeed = 0x5EC;
inline uint64_t SecAggFuzzClientId(uint32_t position) { return 100 + position; }

}  // namespace frugal::fuzz
