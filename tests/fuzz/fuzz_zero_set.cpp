// libFuzzer target for the zero set a broadcast step or a full model carries
// (DecodeZeroSet, frugal/codec/zero_set.h), alone and as a chain piece of a
// model payload: any bytes give an Error (leaving a client's copy untouched),
// or a step and zeros in range that re-encode to the same bytes, after which
// the client's copy is exactly zero at every listed coordinate.
#include <cstdint>
#include <vector>

#include "frugal/codec/zero_set.h"
#include "frugal/round/model_payload.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal;
  const std::span<const uint8_t> in(data, size);
  const uint32_t dim = fuzz::ExpectedDim(in);
  if (dim == 0) return 0;
  auto piece = DecodeZeroSet(in, dim);
  if (piece.ok()) {
    fuzz::Require(fuzz::StrictlyIncreasingBelow(piece->zeros, dim));
    fuzz::Require(fuzz::StrictlyIncreasingBelow(piece->step.indices, dim));
    fuzz::Require(fuzz::AllFinite(piece->step.values));
  }
  // As the one piece of a chain, applied to a client's copy.
  const ModelPayloadHeader h{ModelPayloadKind::kChain, 7, 8, dim, 1};
  const std::vector<uint8_t> payload = EncodeModelPayload(h, std::span(&in, 1));
  std::vector<float> model = fuzz::Base(dim);
  const std::vector<float> before = model;
  auto r = ApplyModelPayload(payload, 7, model, dim);
  if (!r.ok()) {
    fuzz::Require(model == before);
    return 0;
  }
  fuzz::Require(model.size() == dim);
  if (piece.ok()) {
    for (uint32_t z : piece->zeros) fuzz::Require(model[z] == 0.0f);
  }
  return 0;
}
