// libFuzzer target for the shape change a pruned model's downloads carry
// (DecodeShapeChange, frugal/model/prune.h), alone and as a chain piece of a
// model payload: any bytes give an Error (leaving a client's copy untouched),
// or a change that passes CheckShapeChange, re-encodes to the same bytes, and
// maps every pruned parameter to an old one in range. Applied with the
// client's model shape (HeldModelShape), a change is taken exactly when it
// prunes that shape (same architecture, CNN geometry and sizes), as a chain's
// piece or a full model's shape, and a refusal leaves the copy untouched.
#include <cstdint>
#include <vector>

#include "frugal/codec/downlink.h"
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
  } else {
    fuzz::Require(model.size() == new_dim);
  }
  if (!change.ok() || change->OldParamCount() > fuzz::kMaxFuzzDim) return 0;

  // The client's model is the change's own old shape: taken as the unchecked
  // call took it; a model of another geometry (or a CNN for an MLP's change,
  // or other sizes) refuses it and keeps its copy.
  HeldModelShape own{change->old_sizes, change->old_sizes, change->cnn};
  HeldModelShape other = own;
  if (other.cnn) {
    other.cnn->height += 4;
  } else {
    other.cnn = CnnGeometry{8, 8, 3};
  }
  HeldModelShape resized = own;
  resized.sizes.back() += 1;
  resized.unpruned.back() += 1;
  for (const HeldModelShape* held : {&own, &other, &resized}) {
    std::vector<float> copy = before;
    auto checked = ApplyModelPayload(payload, 7, copy, dim, nullptr, nullptr, held);
    fuzz::Require(checked.ok() == (held == &own && r.ok()));
    fuzz::Require(checked.ok() ? copy == model : copy == before);
  }
  // As a full model's shape: a model of the new dimension after it.
  const std::vector<float> weights = fuzz::Base(new_dim);
  auto body = EncodeDownlink(weights, {}, DownlinkConfig{.bits = 0});
  fuzz::Require(body.ok());
  const std::span<const uint8_t> full_pieces[] = {in, body->bytes};
  const std::vector<uint8_t> full = EncodeModelPayload({ModelPayloadKind::kFull, 0, 8, new_dim, 2}, full_pieces);
  for (const HeldModelShape* held : {&own, &other, &resized}) {
    std::vector<float> copy = before;
    auto checked = ApplyModelPayload(full, 0, copy, dim, nullptr, nullptr, held);
    fuzz::Require(checked.ok() == (held == &own));
    fuzz::Require(checked.ok() ? copy == weights : copy == before);
  }
  return 0;
}
