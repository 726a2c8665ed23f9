// Pruning and per-device widths at the round level ([prune], [widths];
// docs/frugal-models.md), written once for both front ends: when the server
// prunes the global MLP and what that does to the engine, which nested
// sub-network a device class trains, and how a narrow client's residual maps
// into its full one. [prune] also narrows the CNN's channels; [widths] is for
// MLPs only. The simulator and the coordinator only move the bytes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/energy/profiles.h"
#include "frugal/model/model.h"
#include "frugal/model/prune.h"
#include "frugal/round/client_task.h"
#include "frugal/round/engine.h"

namespace frugal {

// A nested sub-network of the current global MLP ([widths], HeteroFL's first
// units, or FedRolex's rolling window of them with widths.rolling).
struct NestedNetwork {
  double width = 1;
  std::unique_ptr<Mlp> model;   // the sub-network, a smaller dense Mlp
  std::vector<uint32_t> map;    // sub-network coordinate -> global model coordinate, ascending
};

// One prune step the engine took (RoundEngine::ApplyShapeChange).
struct PruneStep {
  MlpShapeChange change;
  std::vector<uint32_t> map;        // ShapeChangeParamMap(change): new coordinate -> old one
  std::vector<uint32_t> new_sizes;  // change.NewSizes()
  uint32_t from_version = 0;        // the engine's version before the step
  uint32_t to_version = 0;          // the pruned model's version
  uint32_t old_dim = 0;
};

// The round-level state of [prune] and [widths] for one run. Not thread-safe;
// callers serialise calls as they do the engine's.
class LeanRound {
 public:
  // `model` is the run's initial model. Errors (InvalidArgument) name the
  // table: [prune] or [widths] on a model without hidden layers, [widths] on
  // the CNN, either with the secure pipeline, a width outside (0, 1]. Device classes are the front
  // end's to check against its profiles. `rolling` (widths.rolling): the
  // sub-networks are FedRolex's rolling windows, which move by one unit a
  // round (SetRound), rather than HeteroFL's fixed first units.
  static Result<LeanRound> Create(const Model& model, const PruneConfig& prune,
                                  std::span<const std::pair<std::string, double>> widths, Pipeline pipeline,
                                  bool rolling = false);

  bool prunes() const { return !unpruned_sizes_.empty(); }
  bool has_widths() const { return !width_by_device_.empty(); }
  bool rolling() const { return rolling_; }
  bool active() const { return prunes() || has_widths(); }
  const std::vector<uint32_t>& unpruned_sizes() const { return unpruned_sizes_; }
  const std::map<std::string, double>& width_by_device() const { return width_by_device_; }
  // The current global model's prunable sizes (PrunableSizes: the unpruned
  // ones before any step; empty when inactive), of a Cnn of cnn() when set.
  const std::vector<uint32_t>& sizes() const { return sizes_; }
  const std::optional<CnnGeometry>& cnn() const { return cnn_; }
  // Training FLOPs per example of the unpruned model ([prune] only).
  double UnprunedTrainFlops() const;
  // The current shape in words, e.g. "784-140-140-10 MLP" or "CNN with 22 and 45 channels and 362 dense units".
  std::string ShapeDescription() const;

  // The width device class `device` (a profile id) trains at: 1 (the whole model) unless [widths] narrows it.
  double WidthFor(std::string_view device) const;
  // Before round `round`'s clients train: with rolling windows, moves every
  // sub-network to that round's window (NestedSubnetwork's offset = round);
  // nothing otherwise. A client of the round and the server's Ingest use the
  // same map; a front end calls it once a round opens, before NestedFor.
  void SetRound(uint32_t round);
  // The sub-network a client of device class `device` trains (in the round
  // last given to SetRound), or null for the whole model.
  const NestedNetwork* NestedFor(std::string_view device) const;
  // The sub-network of `width` (< 1) of the current shape; null when none is configured at that width.
  const NestedNetwork* NestedAt(double width) const;
  // Training FLOPs per example (forward + backward) of every narrowed device
  // class's sub-network of the current shape, by profile id: what a planner
  // estimates such a client's task at (RoundPlanner::SetFlopsPerExample).
  std::map<std::string, double> TrainFlopsByDevice() const;

  // After `round` closes: when the schedule asks for narrower hidden layers,
  // chooses the units to keep from the global model, prunes the engine
  // (ApplyShapeChange) and rebuilds the sub-networks for the new shape.
  // nullopt when no step follows this round. An engine error leaves all as it was.
  Result<std::optional<PruneStep>> PruneAfter(uint32_t round, RoundEngine& engine);
  // A pruned run resumed after a restart: the engine was restored at `shape`
  // (its shape relative to the unpruned model, RoundEngine::shape()), so the
  // current sizes and the sub-networks follow it. The schedule needs nothing
  // else: which step follows a round depends on the round alone, and a step
  // never widens a layer. InvalidArgument when the run does not prune or the
  // shape is not of its unpruned model; nothing changes then.
  Status Resume(const MlpShapeChange& shape);

  // The current global model (an Mlp or a Cnn, named `name`), for a front end's workspaces and FLOPs.
  std::unique_ptr<Model> MakeModel(std::string name) const;

 private:
  void BuildNested();

  std::vector<uint32_t> unpruned_sizes_;  // [prune] only
  std::vector<uint32_t> sizes_;
  std::optional<CnnGeometry> cnn_;  // the model is a Cnn of this geometry
  PruneConfig prune_;
  std::map<std::string, double> width_by_device_;
  std::map<double, NestedNetwork> nested_;  // by width, for the current shape (and round, when rolling)
  bool rolling_ = false;
  uint32_t offset_ = 0;  // the rolling windows' offset: the round given to SetRound
};

// [widths] keyed by the profiles' device ids (a class may be spelled in any
// case, as a device's Hello may): what LeanRound::Create and NestedFor expect.
// An unknown class is an error naming widths.devices.
Result<std::vector<std::pair<std::string, double>>> WidthsByProfileId(
    std::span<const std::pair<std::string, double>> widths, const EnergyProfiles& profiles);

// The nested sub-network of `width` in (0, 1) of an MLP of these layer sizes;
// `offset` as NestedSubnetwork's (the round, with rolling windows).
NestedNetwork MakeNestedNetwork(std::span<const uint32_t> sizes, double width, uint32_t offset = 0);

// A narrow client's task (frugal-client; the simulator runs the same steps
// with its attacks between them): RunClientTask on `nested`'s sub-network
// from the held full model's slice, with the full residual's slice (empty: no
// error feedback), whose refreshed values are written back into it. The
// update and the FLOPs are the sub-network's. Thread-compatible.
Result<ClientTaskResult> RunNestedClientTask(const NestedNetwork& nested, std::span<const float> full_start,
                                             const Dataset& data, std::span<const uint32_t> indices,
                                             const TrainConfig& train, const UplinkConfig& uplink,
                                             std::span<float> full_residual, ModelWorkspace& ws,
                                             std::vector<float>& scratch);

// A narrow client's residual: the sub-network's coordinates of its full one.
std::vector<float> NarrowResidual(std::span<const uint32_t> nested_map, std::span<const float> full);
// Writes a narrow client's refreshed residual back into its full one; the
// coordinates it did not train keep what they held.
void WidenResidual(std::span<const uint32_t> nested_map, std::span<const float> narrow, std::span<float> full);

}  // namespace frugal
