#include <cmath>

#include "frugal/model/model.h"
#include "loss.h"

namespace frugal {

double Model::SgdStep(std::span<float> params, BatchView batch, float learning_rate, ModelWorkspace& ws) const {
  float* grad = internal::Grow(ws.trainer.grad, params.size());
  const double loss = LossAndGradient(params, batch, std::span<float>(grad, params.size()), ws);
  if (!std::isfinite(loss)) return loss;
  for (size_t i = 0; i < params.size(); ++i) params[i] -= learning_rate * grad[i];
  return loss;
}

}  // namespace frugal
