// Structured pruning of an MLP: whole hidden units are removed, so the pruned
// model is a smaller dense Mlp (smaller parameter vector, smaller GEMMs, FLOPs
// counted from its shape). A shape change names the units kept; its parameter
// map carries any model-sized vector (model, residuals, optimizer moments)
// from the old layout to the new one, and it has a compact wire form that a
// chain of model steps carries to clients holding the old shape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

// [prune]: when and how far the server prunes the global MLP's hidden units.
struct PruneConfig {
  // The FLOPs per example (forward + backward) the last step reaches, as a
  // fraction of the unpruned model's; 1 = no pruning.
  double target_flops_fraction = 1.0;
  uint32_t start_round = 10;  // the first step follows this round
  uint32_t steps = 1;         // steps to reach the target, each removing an equal share of FLOPs
  uint32_t every = 5;         // rounds between steps
  bool enabled() const { return target_flops_fraction < 1.0; }
};
// Errors name the key that is out of range.
Status CheckPruneConfig(const PruneConfig& c);

// Which hidden units of an MLP with layer sizes old_sizes = {in, hidden..., out}
// stay: per hidden layer, the kept units' indices, ascending, at least one.
struct MlpShapeChange {
  std::vector<uint32_t> old_sizes;
  std::vector<std::vector<uint32_t>> kept;  // kept[l]: units of hidden layer l (layer sizes index l + 1)
  std::vector<uint32_t> NewSizes() const;
};

// Parameters of an Mlp with these layer sizes (weights and biases of every layer).
size_t MlpParamCount(std::span<const uint32_t> sizes);
// FLOPs per example (forward + backward) of an Mlp with these sizes, counted as Mlp::flops_per_example.
double MlpTrainFlops(std::span<const uint32_t> sizes);

// Checks a shape change: at least {in, one hidden, out}, every size in
// [1, 2^20], kept lists ascending, in range, non-empty. Errors name the layer.
Status CheckShapeChange(const MlpShapeChange& change);

// For every parameter of the pruned model, its index in the old one (size
// MlpParamCount(NewSizes())). The change must pass CheckShapeChange.
std::vector<uint32_t> ShapeChangeParamMap(const MlpShapeChange& change);
// out[i] = in[map[i]]: a model-sized vector of the old layout in the new one.
std::vector<float> ApplyParamMap(std::span<const uint32_t> map, std::span<const float> in);

// A unit's score: the L2 norm of its incoming weights, its bias and its
// outgoing weights in `params` (an Mlp of `sizes`). One vector per hidden layer.
std::vector<std::vector<double>> UnitScores(std::span<const uint32_t> sizes, std::span<const float> params);

// Keeps the widths[l] highest-scoring units of hidden layer l (ties: the lower
// index), listed ascending. widths[l] must be in [1, sizes[l + 1]].
MlpShapeChange ChooseKeptUnits(std::span<const uint32_t> sizes, std::span<const float> params,
                               std::span<const uint32_t> widths);

// Per-device widths (HeteroFL): the sub-network of the first
// max(1, ceil(width * units)) units of every hidden layer, as a shape change
// of `sizes` (its parameter map takes the model's coordinates to the
// sub-network's). width must be in (0, 1].
MlpShapeChange NestedSubnetwork(std::span<const uint32_t> sizes, double width);

// Hidden widths, each original width scaled by one common factor (at least 1
// unit), the widest whose FLOPs per example are at most `fraction` of the
// original's (the narrowest possible if none is).
std::vector<uint32_t> WidthsForFlopsFraction(std::span<const uint32_t> original_sizes, double fraction);

// The hidden widths the schedule asks for after `round` closes, or nullopt
// when no step follows that round. Steps follow rounds start_round,
// start_round + every, ...; step s of S reaches 1 - (1 - target) * s / S of the
// original FLOPs.
std::optional<std::vector<uint32_t>> PruneStepWidths(const PruneConfig& c, uint32_t round,
                                                     std::span<const uint32_t> original_sizes);

// Wire form: "FRSC", a format byte, the number of layer sizes, each size
// (u32 LE), then per hidden layer a bitmask of its old units (bit u of byte
// u/8 set = kept). 25 bytes per 200-unit layer.
std::vector<uint8_t> EncodeShapeChange(const MlpShapeChange& change);
// Validates everything (magic, format, sizes, mask padding, kept counts,
// length); errors name the field.
Result<MlpShapeChange> DecodeShapeChange(std::span<const uint8_t> bytes);
// Whether bytes start with the shape change's magic (a chain piece that is a shape change).
bool IsShapeChange(std::span<const uint8_t> bytes);

}  // namespace frugal
