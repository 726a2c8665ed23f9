#include "frugal/round/client_task.h"

namespace frugal {

Result<TrainStats> TrainClientDelta(const Model& model, std::span<const float> start, const Dataset& data,
                                    std::span<const uint32_t> indices, const TrainConfig& train, ModelWorkspace& ws,
                                    std::vector<float>& delta) {
  if (start.size() != model.num_params()) {
    return InvalidArgumentError("client model has " + std::to_string(start.size()) + " parameters, " +
                                std::string(model.name()) + " needs " + std::to_string(model.num_params()));
  }
  delta.assign(start.begin(), start.end());
  FRUGAL_ASSIGN_OR_RETURN(TrainStats stats, Train(model, delta, data, indices, train, ws));
  for (size_t j = 0; j < delta.size(); ++j) delta[j] -= start[j];
  return stats;
}

Result<ClientTaskResult> RunClientTask(const Model& model, std::span<const float> start, const Dataset& data,
                                       std::span<const uint32_t> indices, const TrainConfig& train,
                                       const UplinkConfig& uplink, std::span<float> residual,
                                       ModelWorkspace& ws, std::vector<float>& scratch) {
  ClientTaskResult out;
  FRUGAL_ASSIGN_OR_RETURN(out.train, TrainClientDelta(model, start, data, indices, train, ws, scratch));
  FRUGAL_ASSIGN_OR_RETURN(out.update, EncodeUplink(scratch, uplink, residual));
  return out;
}

}  // namespace frugal
