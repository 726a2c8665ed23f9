// libFuzzer target for the shape change a pruned model's downloads carry
// (DecodeShapeChange, frugal/model/prune.h), alone and as a chain piece of a
// model payload: any bytes give an Error (leaving a client's copy untouched),
// or a change that passes CheckShapeChange, re-encodes to the same bytes, and
// maps every pruned parameter to an old one in range.
#include <cstdint>
#include <vector>

#include "frugal/model/prune.h"
#include "frugal/round/model_payload.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal;
  const std::span<const uint8_t> in(data, size);
  auto change = DecodeShapeChange(in);
  if (change.ok()) {
    fuzz::Require(CheckShapeChange(*change).ok());
    fuzz::Require(EncodeShapeChange(*change) == std::vector<uint8_t>(in.begin(), in.end()));
    const size_t old_dim = change->OldParamCount();
    if (old_dim > fuzz::kMaxFuzzDim) return 0;  // keeps each run small; the map is linear in it
    const std::vector<uint32_t> map = ShapeChangeParamMap(*change);
    fuzz::Require(map.size() == change->NewParamCount());
    for (uint32_t i : map) fuzz::Require(i < old_dim);
  }
  // As the one piece of a chain, applied to a client's copy of 20 parameters
  // (or the change's own old dimension when small).
  uint32_t dim = 20;
  if (change.ok() && change->OldParamCount() <= fuzz::kMaxFuzzDim) {
    dim = static_cast<uint32_t>(change->OldParamCount());
  }
  const uint32_t new_dim = change.ok() && dim == change->OldParamCount()
                               ? static_cast<uint32_t>(change->NewParamCount())
                               : dim;
  const ModelPayloadHeader h{ModelPayloadKind::kChain, 7, 8, new_dim, 1};
  const std::vector<uint8_t> payload = EncodeModelPayload(h, std::span(&in, 1));
  std::vector<float> model = fuzz::Base(dim);
  const std::vector<float> before = model;
  std::vector<uint32_t> sizes;
  auto r = ApplyModelPayload(payload, 7, model, dim, &sizes);
  if (!r.ok()) {
    fuzz::Require(model == before);
    return 0;
  }
  fuzz::Require(model.size() == new_dim);
  return 0;
}
