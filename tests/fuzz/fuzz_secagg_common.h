// The key and context of fuzz_secagg_share's sealed seeds, shared with the
// corpus generator so that the seeds open and the fuzzer reaches the bundle
// decoder behind the AES-GCM tag.
#pragma once

#include <cstddef>
#include <cstdint>

#include "frugal/privacy/secagg.h"

namespace frugal::fuzz {

inline privacy::Key256 SecAggShareKey() {
  privacy::Key256 k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0x5a ^ i);
  return k;
}

inline constexpr privacy::ShareMessageContext kSecAggShareContext{0x0123456789abcdefULL, 7, 3, 9};

}  // namespace frugal::fuzz
