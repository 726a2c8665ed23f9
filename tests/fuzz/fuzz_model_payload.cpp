// libFuzzer target for the model payload a client downloads (ParseModelPayload /
// ApplyModelPayload): any bytes give an Error that leaves the client's copy
// untouched, or a copy of the model's dimension holding only finite values.
// ChainPayloadSteps (the steps an agent keeps, secure.history_steps) decodes
// the same bytes: an Error, or in-range indices with finite values, and for a
// payload that applied as steps, exactly the steps applied (summed in order).
#include <cmath>
#include <cstdint>
#include <vector>

#include "frugal/codec/zero_set.h"
#include "frugal/round/model_payload.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal;
  const std::span<const uint8_t> in(data, size);
  // The dimension and version the payload claims, when plausible, so mutations reach the pieces.
  uint32_t dim = 1000, from = 0;
  if (size >= 24) {
    from = uint32_t{data[8]} | (uint32_t{data[9]} << 8) | (uint32_t{data[10]} << 16) | (uint32_t{data[11]} << 24);
    const uint32_t d = uint32_t{data[16]} | (uint32_t{data[17]} << 8) | (uint32_t{data[18]} << 16) | (uint32_t{data[19]} << 24);
    if (d != 0 && d <= fuzz::kMaxFuzzDim) dim = d;
  }
  std::vector<float> model = fuzz::Base(dim);
  const std::vector<float> before = model;
  // Merged pieces of format version 3 are coded against a guide: the seed corpus's (fuzz::Guide).
  auto r = ApplyModelPayload(in, from, model, dim, nullptr, nullptr, nullptr, fuzz::Guide(dim));
  auto steps = ChainPayloadSteps(in, dim, fuzz::Guide(dim));
  if (steps.ok()) {
    std::vector<float> replay = before;
    for (const SparseUpdate& u : *steps) {
      fuzz::Require(u.indices.size() == u.values.size());
      for (size_t j = 0; j < u.indices.size(); ++j) {
        fuzz::Require(u.indices[j] < dim && std::isfinite(u.values[j]));
        replay[u.indices[j]] += u.values[j];
      }
    }
    // A chain whose steps carry no zero sets applies as exactly these additions.
    std::vector<std::span<const uint8_t>> pieces;
    auto h = ParseModelPayload(in, dim, &pieces);
    bool zero_sets = false;
    for (auto p : pieces) zero_sets = zero_sets || IsZeroSet(p);
    if (r.ok() && h.ok() && !zero_sets) {
      for (size_t j = 0; j < dim; ++j) fuzz::Require(std::isnan(replay[j]) ? std::isnan(model[j]) : replay[j] == model[j]);
    }
  }
  if (!r.ok()) {
    fuzz::Require(model == before);
    return 0;
  }
  fuzz::Require(model.size() == dim);
  for (float x : model) fuzz::Require(std::isfinite(x));
  return 0;
}
