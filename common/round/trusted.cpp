#include "frugal/round/trusted.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "frugal/core/streams.h"

namespace frugal {

Result<std::vector<uint32_t>> TrustedIndices(uint64_t run_seed, size_t size, uint32_t count) {
  if (count == 0 || count > size) {
    return InvalidArgumentError("server.trusted_examples is " + std::to_string(count) +
                                ", must be in [1, " + std::to_string(size) + "] (the training set's size)");
  }
  std::vector<uint32_t> all(size);
  std::iota(all.begin(), all.end(), 0u);
  Rng rng(StreamSeed(run_seed, SeedStream::kTrusted));
  // A partial Fisher-Yates shuffle: the first `count` entries are the sample.
  for (uint32_t i = 0; i < count; ++i) {
    const size_t j = i + static_cast<size_t>(rng.UniformInt(size - i));
    std::swap(all[i], all[j]);
  }
  all.resize(count);
  std::sort(all.begin(), all.end());
  return all;
}

Result<SparseUpdate> TrustedUpdate(const Model& model, std::span<const float> global, const Dataset& data,
                                   std::span<const uint32_t> trusted, TrainConfig train, uint64_t run_seed,
                                   uint32_t round, ModelWorkspace& ws, std::vector<float>& scratch) {
  if (global.size() != model.num_params()) {
    return InvalidArgumentError("server model has " + std::to_string(global.size()) + " parameters, " +
                                std::string(model.name()) + " needs " + std::to_string(model.num_params()));
  }
  scratch.assign(global.begin(), global.end());
  train.seed = StreamSeed(run_seed, SeedStream::kTrustedTrain, round);
  FRUGAL_RETURN_IF_ERROR(Train(model, scratch, data, trusted, train, ws).status());
  SparseUpdate out;
  out.dim = static_cast<uint32_t>(global.size());
  out.indices.resize(global.size());
  std::iota(out.indices.begin(), out.indices.end(), 0u);
  out.values.resize(global.size());
  for (size_t j = 0; j < global.size(); ++j) out.values[j] = scratch[j] - global[j];
  return out;
}

}  // namespace frugal
