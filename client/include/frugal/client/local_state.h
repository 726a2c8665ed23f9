// What the device agent holds between tasks and across reconnects: the model
// (architecture, parameters, the version they are), and the error-feedback
// residual, kept in a file so that it survives restarts.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/model/prune.h"
#include "frugal/round/settings.h"
#include "frugal/round/step_history.h"
#include "frugal/data/dataset.h"
#include "frugal/model/model.h"

namespace frugal::client {

// The residual file: magic, dimension, CRC32, floats. Written to a temporary
// file and renamed, so a crash leaves the old or the new one, never a mix.
Status SaveResidual(const std::string& path, std::span<const float> residual);
// Loads a residual of `dim` floats; NotFound if absent, DataLoss if corrupt or
// of another dimension (the caller then starts from zeros).
Result<std::vector<float>> LoadResidual(const std::string& path, size_t dim);

// Not thread-safe; one per agent.
class LocalState {
 public:
  explicit LocalState(std::string residual_path) : residual_path_(std::move(residual_path)) {}

  // Takes on the coordinator's architecture for the local data: a new model,
  // holding nothing, unless the same one is already held. Errors: an unknown
  // architecture, or `dim` parameters where the local model has others; on
  // error the held model and version are as they were.
  Status Adopt(const std::string& model_name, uint32_t dim, const Dataset& data);
  // The same for a pruned run ([prune]): `shape` (non-empty) is the global
  // MLP's shape change relative to the unpruned one (Register.shape, FRSC), and
  // `dim` its pruned parameter count. A client holding a version keeps it (the
  // chain from it carries the shape changes since); one holding nothing starts
  // from the unpruned model, which the payloads' shape changes then prune.
  // Errors name what does not fit, and leave the held model and version as
  // they were: everything is checked before anything is replaced.
  Status Adopt(const std::string& model_name, uint32_t dim, const Dataset& data, std::span<const uint8_t> shape);
  // Builds version 1 as every front end does (InitialModel of the run's seed
  // and init), if nothing is held; returns whether it did. Needs a model.
  bool InitFromSeed(uint64_t seed, ModelInit init);
  // Applies a ModelPayload to the held copy: the version now held, or an
  // error after which nothing is held (the next payload must be a full model).
  // A payload carrying a shape change ([prune]) rebuilds the model at the new
  // layer sizes and maps the residual through it (saved to its file at once,
  // so a restart finds it at the new dimension).
  // `guide`: the secure round's support guide from the task, which a merged
  // piece of format version 3 is coded against (empty for other tasks).
  // `supports`: for a merged piece of format version 4, the supports rebuilt
  // from the steps this client kept (privacy::StepSupportsFromHistory).
  Result<uint32_t> Apply(std::span<const uint8_t> payload, std::span<const uint32_t> guide = {},
                         const StepSupportFn* supports = nullptr);
  // Holds nothing from now on (the next Hello announces version 0).
  void Forget();
  // secure.history_steps: keep the last `n` broadcast steps applied (0: none),
  // in memory only, from the next payload or version 1 on.
  void KeepSteps(uint32_t n) { history_ = StepHistory(n); }
  // The steps kept, ending at held_version() (history().from() is what Hello says).
  const StepHistory& history() const { return history_; }

  // The residual of the model's dimension: from its file on first use, zeros
  // if there is none or it is unreadable (logged).
  std::vector<float>& Residual();
  // Writes the residual to its file; a failure is logged, not fatal.
  void SaveResidualFile() const;

  bool has_model() const { return model_ != nullptr; }
  const Model& model() const { return *model_; }
  ModelWorkspace& workspace() { return *ws_; }
  std::vector<float>& scratch() { return scratch_; }
  const std::vector<float>& params() const { return params_; }
  uint32_t held_version() const { return held_version_; }
  uint32_t dim() const { return model_ ? static_cast<uint32_t>(model_->num_params()) : 0; }
  // The held MLP's layer sizes (empty for another architecture).
  std::vector<uint32_t> mlp_sizes() const;

 private:
  // Holds `model` (checked by the caller), as built, and nothing of it yet.
  void Install(std::unique_ptr<Model> model, const std::string& model_name);
  // After `payload` took the copy from from_version to held_version_: the
  // history restarts on a full model, extends on steps, is cleared on a shape change.
  void RecordSteps(std::span<const uint8_t> payload, std::span<const uint32_t> guide, const StepSupportFn* supports,
                   uint32_t from_version,
                   bool reshaped);

  std::string residual_path_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<ModelWorkspace> ws_;
  std::string model_name_;
  std::vector<uint32_t> unpruned_sizes_;  // PrunableSizes of the model as MakeModel built it
  std::vector<float> params_;
  uint32_t held_version_ = 0;
  std::vector<float> residual_;
  std::vector<float> scratch_;
  StepHistory history_;
};

}  // namespace frugal::client
