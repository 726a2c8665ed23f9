// What a client does with a task, shared by the client agent and the simulator:
// train from the model it holds, take the difference, and encode it with error
// feedback. Same code, same bytes on a device and in simulation.
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

struct ClientTaskResult {
  std::vector<uint8_t> update;  // encoded update, exactly the bytes sent
  TrainStats train;
};

// Trains a copy of `start` on data[indices], encodes (trained - start) with
// `uplink`, folding in and refreshing `residual` (empty: no error feedback).
// `scratch` is reused between calls. Thread-compatible. It is
// TrainClientDelta followed by EncodeUplink(delta, uplink, residual).
Result<ClientTaskResult> RunClientTask(const Model& model, std::span<const float> start, const Dataset& data,
                                       std::span<const uint32_t> indices, const TrainConfig& train,
                                       const UplinkConfig& uplink, std::span<float> residual,
                                       ModelWorkspace& ws, std::vector<float>& scratch);

// The training half alone: trains a copy of `start` on data[indices] and
// leaves (trained - start) in `delta` (resized to start.size()), for a caller
// that looks at the dense update before encoding it (the simulator's attacks).
// Errors as Train, or a dimension mismatch. Thread-compatible.
Result<TrainStats> TrainClientDelta(const Model& model, std::span<const float> start, const Dataset& data,
                                    std::span<const uint32_t> indices, const TrainConfig& train, ModelWorkspace& ws,
                                    std::vector<float>& delta);

}  // namespace frugal
