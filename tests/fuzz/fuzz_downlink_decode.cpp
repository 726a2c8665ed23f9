// libFuzzer target for DecodeDownlink / InspectDownlink: any bytes, with the matching
// base, a wrong-size base or none, must give an Error or `dim` finite values.
#include <cstdint>
#include <vector>

#include "frugal/codec/downlink.h"
#include "frugal/codec/frame.h"
#include "fuzz_common.h"

namespace {

void DecodeAndCheck(std::span<const uint8_t> in) {
  using namespace frugal;
  const uint32_t dim = fuzz::ExpectedDim(in);
  const std::vector<float> base = fuzz::Base(dim);
  const std::vector<float> short_base(base.begin(), base.begin() + dim / 2);
  for (std::span<const float> b : {std::span<const float>(base), std::span<const float>(), std::span<const float>(short_base)}) {
    auto r = DecodeDownlink(in, b, dim);
    if (!r.ok()) continue;
    fuzz::Require(r->size() == dim);
    fuzz::Require(fuzz::AllFinite(*r));
    fuzz::Require(InspectDownlink(in, dim).ok());
  }
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
