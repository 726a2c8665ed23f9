#include "frugal/round/selection.h"

#include <algorithm>
#include <unordered_map>

#include "frugal/core/random.h"

namespace frugal {

std::vector<uint32_t> SelectClients(std::span<const uint32_t> available, size_t count, uint64_t seed) {
  const size_t n = available.size();
  count = std::min(count, n);
  // Partial Fisher-Yates over a virtual copy: only the swapped positions are
  // stored, so selecting 1,000 of 1,000,000 costs O(count), not O(n).
  std::unordered_map<size_t, uint32_t> swapped;
  swapped.reserve(2 * count);
  auto at = [&](size_t i) {
    auto it = swapped.find(i);
    return it == swapped.end() ? available[i] : it->second;
  };
  Rng rng(seed);
  std::vector<uint32_t> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const size_t j = i + static_cast<size_t>(rng.UniformInt(n - i));
    const uint32_t vi = at(i), vj = at(j);
    swapped[j] = vi;
    out.push_back(vj);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace frugal
