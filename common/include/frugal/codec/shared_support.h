// A data-independent uplink support: the k coordinates every client of a round
// sends, drawn from a public per-round seed the server announces. Since the set
// depends on nothing but (seed, dim, k), the server knows it and no index goes
// on the wire; and it reveals nothing about any client's data, which a top-k
// index set does (secure aggregation and DP need both properties).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

// The k = UplinkKeepCount(density, dim) coordinates of the round's shared
// support, ascending and distinct, each < dim. The same bits on every platform
// for the same arguments (Frugal's own Rng, integer draws only). Pure function,
// thread-safe. InvalidArgument when dim is 0 or above kMaxCodecDim, or density
// is outside (0, 1].
Result<std::vector<uint32_t>> SharedSupport(uint64_t seed, size_t dim, double density);

// The same for an explicit count 1 <= k <= dim.
Result<std::vector<uint32_t>> SharedSupportOfSize(uint64_t seed, size_t dim, size_t k);

// The public seed of a round's support, derived from the run's seed and the
// round number (the coordinator announces it; the simulator derives the same).
uint64_t SharedSupportSeed(uint64_t run_seed, uint32_t round);

// A support partly guided by public state: the `guided` coordinates
// (ascending, distinct, each < dim, at most k of them) plus k - |guided| drawn
// uniformly from the other coordinates by `seed` (Floyd's sampling over the
// complement, as SharedSupportOfSize). Ascending. With `guided` empty it is
// SharedSupportOfSize(seed, dim, k). Pure function, thread-safe.
// InvalidArgument for a dim or k out of range or a malformed guide.
Result<std::vector<uint32_t>> GuidedSupport(uint64_t seed, size_t dim, size_t k, std::span<const uint32_t> guided);

// The (at most) m coordinates of largest score, among those with score > 0;
// ties go to the lower index, so the set is a pure function of the scores.
// Ascending. Thread-safe.
std::vector<uint32_t> TopScoreCoordinates(std::span<const float> score, size_t m);

// A guide on the wire (the task's support guide), in blocks of `block_size`
// consecutive coordinates (block j: [j*B, min((j+1)*B, dim))): count of blocks
// (u32 little endian) | block size (u16) | Rice parameter (u8) | adaptive flag
// (u8) | the index section (frugal/codec/adaptive_rice.h) of the ascending block
// numbers below ceil(dim / B); an empty guide is 8 bytes. Its size is what
// each client downloads for it. Blocks make the guide cheap to send: a block
// number costs about what one coordinate's index does.
Result<std::vector<uint8_t>> EncodeSupportGuide(std::span<const uint32_t> blocks, uint32_t dim, uint32_t block_size);
// Decodes exactly one guide for a model of `dim` coordinates (dim <=
// kMaxCodecDim) into its coordinates, ascending; refuses truncation, trailing
// bytes, block size 0, more than `max_count` coordinates, blocks out of order
// or range, or a non-canonical section (InvalidArgument naming what was
// wrong). Never reads outside `bytes`; allocates fewer than max_count + block size entries.
Result<std::vector<uint32_t>> DecodeSupportGuide(std::span<const uint8_t> bytes, uint32_t dim, uint32_t max_count);

// The coordinates of `blocks` (ascending block numbers) of `block_size`, ascending.
std::vector<uint32_t> ExpandGuideBlocks(std::span<const uint32_t> blocks, uint32_t dim, uint32_t block_size);

}  // namespace frugal
