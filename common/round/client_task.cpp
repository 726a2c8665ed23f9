#include "frugal/round/client_task.h"

namespace frugal {

Result<ClientTaskResult> RunClientTask(const Model& model, std::span<const float> start, const Dataset& data,
                                       std::span<const uint32_t> indices, const TrainConfig& train,
                                       const UplinkConfig& uplink, std::span<float> residual,
                                       ModelWorkspace& ws, std::vector<float>& scratch) {
  if (start.size() != model.num_params()) {
    return InvalidArgumentError("client model has " + std::to_string(start.size()) + " parameters, " +
                                std::string(model.name()) + " needs " + std::to_string(model.num_params()));
  }
  scratch.assign(start.begin(), start.end());
  ClientTaskResult out;
  FRUGAL_ASSIGN_OR_RETURN(out.train, Train(model, scratch, data, indices, train, ws));
  for (size_t j = 0; j < scratch.size(); ++j) scratch[j] -= start[j];
  FRUGAL_ASSIGN_OR_RETURN(out.update, EncodeUplink(scratch, uplink, residual));
  return out;
}

}  // namespace frugal
