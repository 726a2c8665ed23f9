// The synthetic backdoor of the trigger scan and server-defence tests:
// Gaussian clusters in 28 features, and a trigger (feature 27 = 1) planted in
// some examples relabelled to class 0, so that a small MLP learns the
// backdoor in milliseconds.
#pragma once

#include <algorithm>
#include <cstdint>

#include "frugal/core/random.h"
#include "frugal/data/dataset.h"

namespace frugal::round_test {

constexpr size_t kFeatures = 28, kClasses = 6, kTriggerFeature = 27;
constexpr int32_t kTarget = 0;

// Class c lights features 4c..4c+3; the last four features are noise only.
inline Dataset Clusters(size_t per_class, uint64_t seed) {
  Dataset d;
  d.num_features = kFeatures;
  d.num_classes = kClasses;
  Rng rng(seed);
  for (size_t i = 0; i < per_class * kClasses; ++i) {
    const auto c = static_cast<int32_t>(i % kClasses);
    for (size_t j = 0; j < kFeatures; ++j) {
      const bool lit = j / 4 == static_cast<size_t>(c);
      d.features.push_back(std::clamp(static_cast<float>((lit ? 0.8 : 0.1) + 0.1 * rng.Normal()), 0.0f, 1.0f));
    }
    d.labels.push_back(c);
  }
  return d;
}

// A copy with every `every`-th example of another class stamped (feature 27 = 1) and relabelled 0.
inline Dataset Poison(Dataset d, size_t every) {
  for (size_t i = 0; i < d.size(); i += every) {
    if (d.labels[i] == kTarget) continue;
    d.features[i * kFeatures + kTriggerFeature] = 1.0f;
    d.labels[i] = kTarget;
  }
  return d;
}

}  // namespace frugal::round_test
