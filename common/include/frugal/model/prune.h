// Structured pruning of an MLP's hidden units and of a CNN's channels: whole
// units (a CNN's conv filters and dense units) are removed, so the pruned
// model is a smaller dense Mlp or Cnn (smaller parameter vector, smaller
// GEMMs, FLOPs counted from its shape). A shape change names the units kept; its parameter
// map carries any model-sized vector (model, residuals, optimizer moments)
// from the old layout to the new one, and it has a compact wire form that a
// chain of model steps carries to clients holding the old shape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

class Model;

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

// What a Cnn's shape is beside its channel counts: the image and the kernel.
struct CnnGeometry {
  uint32_t height = 0;
  uint32_t width = 0;
  uint32_t kernel = 0;
  bool operator==(const CnnGeometry&) const = default;
};

// Which hidden units of an MLP with layer sizes old_sizes = {in, hidden..., out}
// stay: per hidden layer, the kept units' indices, ascending, at least one.
// With `cnn` set it prunes a Cnn (model.h) instead: old_sizes = {input
// channels, conv1 channels, conv2 channels, dense units, classes}, and its
// three "hidden layers" are the two convolutions' output channels and the
// dense layer's units.
struct MlpShapeChange {
  std::vector<uint32_t> old_sizes;
  std::vector<std::vector<uint32_t>> kept;  // kept[l]: units of hidden layer l (layer sizes index l + 1)
  std::optional<CnnGeometry> cnn = std::nullopt;  // set: the sizes are a Cnn's, of this geometry
  std::vector<uint32_t> NewSizes() const;
  // Parameters of the model before and after (MlpParamCount, or a Cnn's count).
  size_t OldParamCount() const;
  size_t NewParamCount() const;
};

// Parameters and training FLOPs per example (forward + backward) of the model
// these sizes describe: an Mlp without `cnn`, a Cnn of that geometry with it.
size_t ShapeParamCount(std::span<const uint32_t> sizes, const std::optional<CnnGeometry>& cnn);
double ShapeTrainFlops(std::span<const uint32_t> sizes, const std::optional<CnnGeometry>& cnn);

// The prunable sizes of a model: an Mlp's layer sizes when it has a hidden
// layer, a Cnn's {channels, conv1, conv2, dense units, classes}; empty for
// any other (logistic regression, a layer list). CnnGeometryOf: a Cnn's geometry.
std::vector<uint32_t> PrunableSizes(const Model& model);
std::optional<CnnGeometry> CnnGeometryOf(const Model& model);
// The model of these prunable sizes (an Mlp, or a Cnn of `cnn`'s geometry), named `name`.
// InvalidArgument when the sizes cannot describe one (a CNN needs 5).
Result<std::unique_ptr<Model>> MakePrunedModel(std::span<const uint32_t> sizes, const std::optional<CnnGeometry>& cnn,
                                               std::string name);

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

// A Cnn's channels and dense units scored as UnitScores does an MLP's: the L2
// norm of every parameter that leaves with it. A conv filter: its kernel
// weights, its bias and the next layer's weights that read its channel (the
// next convolution's input slices, or, for the second convolution, the dense
// layer's columns at every pooled pixel of that channel). A dense unit: its
// weights, its bias and the output layer's weights from it. `sizes` as
// PrunableSizes; one vector per pruned layer (conv1, conv2, dense).
std::vector<std::vector<double>> CnnUnitScores(const CnnGeometry& cnn, std::span<const uint32_t> sizes,
                                               std::span<const float> params);
// ChooseKeptUnits for a Cnn: the widths[l] highest CnnUnitScores of each layer.
MlpShapeChange ChooseKeptCnnUnits(const CnnGeometry& cnn, std::span<const uint32_t> sizes,
                                  std::span<const float> params, std::span<const uint32_t> widths);

// Per-device widths (HeteroFL): the sub-network of the first
// max(1, ceil(width * units)) units of every hidden layer, as a shape change
// of `sizes` (its parameter map takes the model's coordinates to the
// sub-network's). width must be in (0, 1]. With `offset` (FedRolex's rolling
// window, Alam et al. 2022), a layer of n units keeps the k units
// (offset mod n + i) mod n, i < k, instead (in ascending order, so a window
// that wraps past the last unit keeps the first ones too); offset 0 is HeteroFL's.
MlpShapeChange NestedSubnetwork(std::span<const uint32_t> sizes, double width, uint32_t offset = 0);

// Hidden widths, each original width scaled by one common factor (at least 1
// unit), the widest whose FLOPs per example are at most `fraction` of the
// original's (the narrowest possible if none is). With `cnn`, the sizes are a
// Cnn's (PrunableSizes) and its FLOPs are the Cnn's.
std::vector<uint32_t> WidthsForFlopsFraction(std::span<const uint32_t> original_sizes, double fraction,
                                             const std::optional<CnnGeometry>& cnn = std::nullopt);

// The hidden widths the schedule asks for after `round` closes, or nullopt
// when no step follows that round. Steps follow rounds start_round,
// start_round + every, ...; step s of S reaches 1 - (1 - target) * s / S of the
// original FLOPs.
std::optional<std::vector<uint32_t>> PruneStepWidths(const PruneConfig& c, uint32_t round,
                                                     std::span<const uint32_t> original_sizes,
                                                     const std::optional<CnnGeometry>& cnn = std::nullopt);

// Wire form: "FRSC", a format byte, the number of layer sizes, each size
// (u32 LE), then per hidden layer a bitmask of its old units (bit u of byte
// u/8 set = kept). 25 bytes per 200-unit layer. A Cnn's change is format 2:
// after the format byte and the number of sizes (5), its height, width and
// kernel (u32 LE each), then the sizes and masks as above.
std::vector<uint8_t> EncodeShapeChange(const MlpShapeChange& change);
// Validates everything (magic, format, sizes, mask padding, kept counts,
// length); errors name the field.
Result<MlpShapeChange> DecodeShapeChange(std::span<const uint8_t> bytes);
// Whether bytes start with the shape change's magic (a chain piece that is a shape change).
bool IsShapeChange(std::span<const uint8_t> bytes);

}  // namespace frugal
