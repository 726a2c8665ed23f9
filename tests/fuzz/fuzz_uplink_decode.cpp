// libFuzzer target for DecodeUplink / InspectUplink: any bytes must give either an
// Error or a sparse update that satisfies every documented invariant. The seed corpus
// holds version-2 frames with plain and adaptive Rice index sections and version-1 frames.
#include <cstdint>
#include <vector>

#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"
#include "frugal/codec/uplink.h"
#include "fuzz_common.h"

namespace {

void DecodeAndCheck(std::span<const uint8_t> in) {
  using namespace frugal;
  const uint32_t dim = fuzz::ExpectedDim(in);
  auto r = DecodeUplink(in, dim);
  auto info = InspectUplink(in, dim);
  fuzz::Require(r.ok() == info.ok());
  if (!r.ok()) return;
  fuzz::Require(r->dim == dim);
  fuzz::Require(r->indices.size() == r->values.size());
  fuzz::Require(r->indices.size() == info->count);
  fuzz::Require(fuzz::StrictlyIncreasingBelow(r->indices, dim));
  fuzz::Require(fuzz::AllFinite(r->values));
  fuzz::Require(ValidateSparseUpdate(*r, dim).ok());
  fuzz::Require(info->rice_parameter >= 0 && info->rice_parameter <= kMaxRiceParameter);
  // Only a version-2 sparse frame can carry an adaptive section.
  fuzz::Require(!info->adaptive_indices || (!info->dense && in.size() > 5 && in[5] == kUplinkSparseVersion));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  DecodeAndCheck(in);
  // Again with the length and checksum repaired, so mutations reach the body decoders.
  if (size >= frugal::kFrameHeaderSize) {
    std::vector<uint8_t> sealed(in.begin(), in.end());
    if (frugal::SealFrame(sealed).ok()) DecodeAndCheck(sealed);
  }
  return 0;
}
