#include "frugal/round/lean_round.h"

#include <algorithm>

namespace frugal {
Result<LeanRound> LeanRound::Create(const Model& model, const PruneConfig& prune,
                                    std::span<const std::pair<std::string, double>> widths, Pipeline pipeline,
                                    bool rolling) {
  LeanRound lean;
  if (!prune.enabled() && widths.empty()) return lean;
  const std::vector<uint32_t> sizes = PrunableSizes(model);
  lean.cnn_ = CnnGeometryOf(model);
  if (prune.enabled()) {
    if (sizes.empty()) {
      return InvalidArgumentError("[prune] removes hidden units of an MLP or channels of the CNN; model '" +
                                  std::string(model.name()) + "' has none");
    }
    if (pipeline == Pipeline::kSecure) return InvalidArgumentError("[prune] is not built for pipeline = \"secure\"");
    FRUGAL_RETURN_IF_ERROR(CheckPruneConfig(prune));
    lean.unpruned_sizes_ = sizes;
    lean.prune_ = prune;
  }
  if (!widths.empty()) {
    if (lean.cnn_) {
      return InvalidArgumentError("[widths] (nested sub-networks) is built for MLPs only, not for model '" +
                                  std::string(model.name()) + "'; [prune] can narrow the CNN");
    }
    if (sizes.empty()) {
      return InvalidArgumentError("[widths] narrows hidden layers of an MLP; model '" + std::string(model.name()) +
                                  "' has none");
    }
    if (pipeline == Pipeline::kSecure) return InvalidArgumentError("[widths] is not built for pipeline = \"secure\"");
    for (const auto& [device, width] : widths) {
      if (!(width > 0 && width <= 1)) {
        return InvalidArgumentError("widths.devices." + device + " must be in (0, 1], got " + std::to_string(width));
      }
      lean.width_by_device_[device] = width;
    }
    lean.rolling_ = rolling;
  }
  lean.sizes_ = sizes;
  lean.BuildNested();
  return lean;
}

double LeanRound::WidthFor(std::string_view device) const {
  const auto w = width_by_device_.find(std::string(device));
  return w == width_by_device_.end() ? 1.0 : w->second;
}

const NestedNetwork* LeanRound::NestedFor(std::string_view device) const {
  if (width_by_device_.empty()) return nullptr;
  return NestedAt(WidthFor(device));
}

const NestedNetwork* LeanRound::NestedAt(double width) const {
  if (width >= 1) return nullptr;
  const auto n = nested_.find(width);
  return n == nested_.end() ? nullptr : &n->second;
}

void LeanRound::SetRound(uint32_t round) {
  if (!rolling_ || round == offset_) return;
  offset_ = round;
  BuildNested();
}

void LeanRound::BuildNested() {
  nested_.clear();
  for (const auto& [device, width] : width_by_device_) {
    if (width >= 1 || nested_.contains(width)) continue;
    nested_[width] = MakeNestedNetwork(sizes_, width, rolling_ ? offset_ : 0);
  }
}

Result<std::optional<PruneStep>> LeanRound::PruneAfter(uint32_t round, RoundEngine& engine) {
  if (unpruned_sizes_.empty()) return std::optional<PruneStep>();
  std::optional<std::vector<uint32_t>> widths = PruneStepWidths(prune_, round, unpruned_sizes_, cnn_);
  if (!widths) return std::optional<PruneStep>();
  bool narrower = false;
  for (size_t l = 0; l < widths->size(); ++l) {
    (*widths)[l] = std::min((*widths)[l], sizes_[l + 1]);
    narrower |= (*widths)[l] < sizes_[l + 1];
  }
  if (!narrower) return std::optional<PruneStep>();
  if (ShapeParamCount(sizes_, cnn_) != engine.dim()) {
    return InternalError("the engine's model has " + std::to_string(engine.dim()) + " parameters, [prune]'s shape " +
                         std::to_string(ShapeParamCount(sizes_, cnn_)));
  }
  PruneStep step;
  step.change = cnn_ ? ChooseKeptCnnUnits(*cnn_, sizes_, engine.global_model(), *widths)
                     : ChooseKeptUnits(sizes_, engine.global_model(), *widths);
  step.from_version = engine.version();
  step.old_dim = static_cast<uint32_t>(engine.dim());
  FRUGAL_ASSIGN_OR_RETURN(step.to_version, engine.ApplyShapeChange(step.change));
  step.map = ShapeChangeParamMap(step.change);
  step.new_sizes = step.change.NewSizes();
  sizes_ = step.new_sizes;
  BuildNested();
  return std::optional<PruneStep>(std::move(step));
}

Status LeanRound::Resume(const MlpShapeChange& shape) {
  if (!prunes()) return InvalidArgumentError("a pruned shape to resume, but the run has no [prune]");
  FRUGAL_RETURN_IF_ERROR(CheckShapeChange(shape));
  if (shape.old_sizes != unpruned_sizes_ || shape.cnn != cnn_) {
    return InvalidArgumentError("the pruned shape to resume is not of this run's unpruned model");
  }
  sizes_ = shape.NewSizes();
  BuildNested();
  return OkStatus();
}

std::map<std::string, double> LeanRound::TrainFlopsByDevice() const {
  std::map<std::string, double> out;
  for (const auto& [device, width] : width_by_device_) {
    const NestedNetwork* nested = NestedAt(width);
    if (nested == nullptr) continue;
    const FlopCount f = nested->model->flops_per_example();
    out[device] = f.forward + f.backward;
  }
  return out;
}

std::unique_ptr<Model> LeanRound::MakeModel(std::string name) const {
  // sizes_ came from a model or a checked shape change, so they describe one.
  auto model = MakePrunedModel(sizes_, cnn_, std::move(name));
  return model.ok() ? std::move(*model) : nullptr;
}

double LeanRound::UnprunedTrainFlops() const { return ShapeTrainFlops(unpruned_sizes_, cnn_); }

std::string LeanRound::ShapeDescription() const {
  std::string shape;
  if (cnn_) {
    return "CNN with " + std::to_string(sizes_[1]) + " and " + std::to_string(sizes_[2]) + " channels and " +
           std::to_string(sizes_[3]) + " dense units";
  }
  for (uint32_t s : sizes_) {
    if (!shape.empty()) shape += '-';
    shape += std::to_string(s);
  }
  return shape + " MLP";
}

Result<std::vector<std::pair<std::string, double>>> WidthsByProfileId(
    std::span<const std::pair<std::string, double>> widths, const EnergyProfiles& profiles) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [device, width] : widths) {
    auto known = profiles.Device(device);
    if (!known.ok()) return known.error().WithContext("widths.devices");
    out.emplace_back((*known)->id, width);
  }
  return out;
}

NestedNetwork MakeNestedNetwork(std::span<const uint32_t> sizes, double width, uint32_t offset) {
  const MlpShapeChange sub = NestedSubnetwork(sizes, width, offset);
  const std::vector<uint32_t> sub_sizes = sub.NewSizes();
  return NestedNetwork{width, std::make_unique<Mlp>(std::vector<size_t>(sub_sizes.begin(), sub_sizes.end())),
                       ShapeChangeParamMap(sub)};
}

Result<ClientTaskResult> RunNestedClientTask(const NestedNetwork& nested, std::span<const float> full_start,
                                             const Dataset& data, std::span<const uint32_t> indices,
                                             const TrainConfig& train, const UplinkConfig& uplink,
                                             std::span<float> full_residual, ModelWorkspace& ws,
                                             std::vector<float>& scratch) {
  if (nested.map.empty() || nested.map.back() >= full_start.size() ||
      (!full_residual.empty() && full_residual.size() != full_start.size())) {
    return InvalidArgumentError("nested sub-network of width " + std::to_string(nested.width) +
                                " does not fit a model of " + std::to_string(full_start.size()) + " parameters");
  }
  const std::vector<float> start = ApplyParamMap(nested.map, full_start);
  std::vector<float> resid = full_residual.empty() ? std::vector<float>{} : NarrowResidual(nested.map, full_residual);
  FRUGAL_ASSIGN_OR_RETURN(ClientTaskResult result,
                          RunClientTask(*nested.model, start, data, indices, train, uplink, resid, ws, scratch));
  if (!full_residual.empty()) WidenResidual(nested.map, resid, full_residual);
  return result;
}

std::vector<float> NarrowResidual(std::span<const uint32_t> nested_map, std::span<const float> full) {
  return ApplyParamMap(nested_map, full);
}

void WidenResidual(std::span<const uint32_t> nested_map, std::span<const float> narrow, std::span<float> full) {
  for (size_t i = 0; i < nested_map.size(); ++i) full[nested_map[i]] = narrow[i];
}

}  // namespace frugal
