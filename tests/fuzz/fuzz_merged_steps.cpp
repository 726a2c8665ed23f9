// libFuzzer target for DecodeMergedSteps (a chain of broadcast steps merged into
// one downlink piece): any bytes give an Error, or steps of the frame's dimension
// with strictly increasing in-range indices and finite values that re-encode, in
// the frame's format version (1 to 3; version 3 against fuzz::Guide), to
// exactly the input. Version 4 is decoded against a fixed history
// (fuzz::V4Supports) and must re-encode, with its rounds, to the input too.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "frugal/codec/downlink.h"
#include "frugal/codec/frame.h"
#include "fuzz_common.h"

namespace {

void DecodeAndCheck(std::span<const uint8_t> in) {
  using namespace frugal;
  const uint32_t dim = fuzz::ExpectedDim(in);
  const std::vector<uint32_t> guide = fuzz::Guide(dim);
  if (in.size() > 5 && in[5] == 4) {
    const StepSupportFn supports = fuzz::V4Supports(dim);
    auto v4 = DecodeMergedStepsV4(in, dim, supports);
    if (!v4.ok()) return;
    fuzz::Require(!v4->steps.empty() && v4->steps.size() == v4->rounds.size());
    for (const SparseUpdate& u : v4->steps) {
      fuzz::Require(u.dim == dim && !u.indices.empty() && u.indices.size() == u.values.size());
      fuzz::Require(std::adjacent_find(u.indices.begin(), u.indices.end(), std::greater_equal<uint32_t>{}) ==
                    u.indices.end());
      fuzz::Require(u.indices.back() < dim && fuzz::AllFinite(u.values));
    }
    auto again = EncodeMergedStepsV4(v4->steps, v4->rounds, dim, supports);
    fuzz::Require(again.ok() && std::equal(again->begin(), again->end(), in.begin(), in.end()));
    return;
  }
  auto r = DecodeMergedSteps(in, dim, guide);
  if (!r.ok()) return;
  fuzz::Require(!r->empty());
  for (const SparseUpdate& u : *r) {
    fuzz::Require(u.dim == dim);
    fuzz::Require(!u.indices.empty() && u.indices.size() == u.values.size());
    fuzz::Require(std::is_sorted(u.indices.begin(), u.indices.end()));
    fuzz::Require(std::adjacent_find(u.indices.begin(), u.indices.end()) == u.indices.end());
    fuzz::Require(u.indices.back() < dim);
    fuzz::Require(fuzz::AllFinite(u.values));
  }
  fuzz::Require(in[5] >= 1 && in[5] <= 3);  // the frame's version byte: the decoder reads 1 to 3
  auto again = EncodeMergedSteps(*r, dim, in[5], guide);
  fuzz::Require(again.ok() && std::equal(again->begin(), again->end(), in.begin(), in.end()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  DecodeAndCheck(in);
  if (size >= frugal::kFrameHeaderSize) {
    std::vector<uint8_t> sealed(in.begin(), in.end());
    if (frugal::SealFrame(sealed).ok()) DecodeAndCheck(sealed);
  }
  return 0;
}
