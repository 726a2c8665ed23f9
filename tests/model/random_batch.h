// Synthetic batches for the model tests' arithmetic checks: features uniform
// in [-1, 1), labels uniform over the classes, from one seed.
#pragma once

#include <cstdint>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/model/model.h"

namespace frugal::test {

struct Batch {
  std::vector<float> x;
  std::vector<int32_t> y;
  BatchView view() const { return BatchView{x.data(), y.data(), y.size()}; }
};

inline Batch RandomBatch(size_t n, size_t dim, size_t classes, uint64_t seed) {
  Rng rng(seed);
  Batch b;
  b.x.resize(n * dim);
  for (float& v : b.x) v = 2.0f * rng.UniformFloat() - 1.0f;
  for (size_t i = 0; i < n; ++i) b.y.push_back(static_cast<int32_t>(rng.UniformInt(classes)));
  return b;
}

}  // namespace frugal::test
