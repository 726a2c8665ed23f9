// libFuzzer target for layer-list model descriptions ("layers: ...", which
// reach an agent in Register.model): any text gives an Error or a model whose
// parameter count and FLOPs are the plan's, without allocating beyond the
// parser's limits (only the plan is built here, never the parameters).
#include <cmath>
#include <cstdint>
#include <string_view>

#include "frugal/model/layers.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t input_dim = 1 + data[0] * 4u;  // 1..1021
  const size_t classes = 2 + data[1] % 9;
  const std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  frugal::TensorShape input;
  auto layers = frugal::ParseLayerList(text, &input, input_dim);
  if (!layers.ok()) return 0;
  frugal::fuzz::Require(!layers->empty());
  auto plan = frugal::PlanLayers(input, *layers, classes);
  if (!plan.ok()) return 0;
  frugal::fuzz::Require(plan->outputs.size() == plan->layers.size());
  frugal::fuzz::Require(std::isfinite(plan->flops.forward) && plan->flops.forward > 0);
  frugal::fuzz::Require(plan->flops.backward >= plan->flops.forward - 1e-6 * plan->flops.forward);
  frugal::fuzz::Require(plan->outputs.back().size() == classes);
  return 0;
}
