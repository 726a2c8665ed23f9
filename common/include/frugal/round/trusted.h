// The server's trusted set and its own update on it (FLTrust's root data set,
// Cao et al. NDSS 2021): server.robust = "fltrust" weighs each client update
// by its cosine similarity with this update. Both front ends call these, so a
// simulated and a served run compute the same reference. No I/O.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "frugal/codec/uplink.h"
#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/model/model.h"
#include "frugal/train/trainer.h"

namespace frugal {

// `count` distinct indices of a training set of `size` examples, a uniform
// sample on the run's kTrusted seed stream, sorted. Errors when count is 0 or
// larger than size.
Result<std::vector<uint32_t>> TrustedIndices(uint64_t run_seed, size_t size, uint32_t count);

// The server's update for `round`: a copy of `global` trained on
// data[trusted] with the clients' train config (seeded on the run's
// kTrustedTrain stream by round), minus `global`, as a dense SparseUpdate
// (every index). `scratch` is reused between calls.
Result<SparseUpdate> TrustedUpdate(const Model& model, std::span<const float> global, const Dataset& data,
                                   std::span<const uint32_t> trusted, TrainConfig train, uint64_t run_seed,
                                   uint32_t round, ModelWorkspace& ws, std::vector<float>& scratch);

}  // namespace frugal
