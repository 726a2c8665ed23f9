// libFuzzer target for the model payload a client downloads (ParseModelPayload /
// ApplyModelPayload): any bytes give an Error that leaves the client's copy
// untouched, or a copy of the model's dimension holding only finite values.
#include <cmath>
#include <cstdint>
#include <vector>

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
  if (!r.ok()) {
    fuzz::Require(model == before);
    return 0;
  }
  fuzz::Require(model.size() == dim);
  for (float x : model) fuzz::Require(std::isfinite(x));
  return 0;
}
