#include "frugal/client/local_state.h"

#include <spdlog/spdlog.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "frugal/core/streams.h"
#include "frugal/round/model_payload.h"

namespace frugal::client {
namespace {

constexpr uint32_t kResidualMagic = 0x53455246;  // "FRES"

Status DimMismatch(const std::string& model_name, uint32_t dim, size_t local) {
  return InvalidArgumentError("coordinator's model has " + std::to_string(dim) + " parameters, the local " +
                              model_name + " has " + std::to_string(local));
}

uint32_t Crc(std::span<const float> v) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(v.data()), static_cast<uInt>(v.size() * sizeof(float))));
}

}  // namespace

Status SaveResidual(const std::string& path, std::span<const float> residual) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return UnavailableError("cannot create " + tmp);
    const uint32_t header[3] = {kResidualMagic, static_cast<uint32_t>(residual.size()), Crc(residual)};
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    out.write(reinterpret_cast<const char*>(residual.data()), static_cast<std::streamsize>(residual.size_bytes()));
    out.flush();
    if (!out) return UnavailableError("error writing " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return UnavailableError("cannot rename " + tmp + ": " + ec.message());
  return OkStatus();
}

Result<std::vector<float>> LoadResidual(const std::string& path, size_t dim) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("no residual file " + path);
  uint32_t header[3] = {0, 0, 0};
  in.read(reinterpret_cast<char*>(header), sizeof header);
  if (!in || header[0] != kResidualMagic) return DataLossError(path + " is not a residual file");
  if (header[1] != dim) {
    return DataLossError(path + " holds " + std::to_string(header[1]) + " values, the model has " +
                         std::to_string(dim));
  }
  std::vector<float> v(dim);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(dim * sizeof(float)));
  if (!in || in.peek() != std::char_traits<char>::eof()) return DataLossError(path + " has the wrong length");
  if (Crc(v) != header[2]) return DataLossError(path + " fails its checksum");
  return v;
}

Status LocalState::Adopt(const std::string& model_name, uint32_t dim, const Dataset& data) {
  if (model_ && model_name_ == model_name) {
    if (model_->num_params() != dim) return DimMismatch(model_name, dim, model_->num_params());
    return OkStatus();
  }
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<Model> fresh, MakeModel(model_name, data.num_features, data.num_classes));
  if (fresh->num_params() != dim) return DimMismatch(model_name, dim, fresh->num_params());
  Install(std::move(fresh), model_name);
  return OkStatus();
}

Status LocalState::Adopt(const std::string& model_name, uint32_t dim, const Dataset& data,
                         std::span<const uint8_t> shape) {
  if (shape.empty()) return Adopt(model_name, dim, data);
  auto change = DecodeShapeChange(shape);
  if (!change.ok()) return change.error().WithContext("Register shape");
  if (Status st = CheckShapeChange(*change); !st.ok()) return st.error().WithContext("Register shape");
  const std::vector<uint32_t> pruned = change->NewSizes();
  if (change->NewParamCount() != dim) {
    return InvalidArgumentError("Register shape has " + std::to_string(change->NewParamCount()) +
                                " parameters, its dim says " + std::to_string(dim));
  }
  // Holding a version, it keeps it: the chain from that version carries the
  // shape changes since (ApplyModelPayload checks each against the held
  // dimension). Holding nothing, it starts from the unpruned model: version 1
  // (seed_init) and every chain from it are of that shape.
  const std::vector<uint32_t> held = model_ ? PrunableSizes(*model_) : std::vector<uint32_t>{};
  if (model_ && model_name_ == model_name && held_version_ != 0 && held.size() == pruned.size() &&
      held.front() == pruned.front() && held.back() == pruned.back() && CnnGeometryOf(*model_) == change->cnn) {
    return OkStatus();
  }
  const auto old_count = static_cast<uint32_t>(change->OldParamCount());
  const auto prunes = [&](const Model& m) {
    return PrunableSizes(m) == change->old_sizes && CnnGeometryOf(m) == change->cnn;
  };
  // The model the shape prunes: the one held, or a fresh one built aside and
  // checked before it replaces anything, so a bad shape leaves the held model
  // and version as they were.
  if (model_ && model_name_ == model_name && prunes(*model_)) return Adopt(model_name, old_count, data);
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<Model> fresh, MakeModel(model_name, data.num_features, data.num_classes));
  if (fresh->num_params() != old_count) return DimMismatch(model_name, old_count, fresh->num_params());
  if (!prunes(*fresh)) {
    return InvalidArgumentError("Register shape prunes a model of other layer sizes than the local " + model_name);
  }
  Install(std::move(fresh), model_name);
  return OkStatus();
}

void LocalState::Install(std::unique_ptr<Model> model, const std::string& model_name) {
  model_ = std::move(model);
  unpruned_sizes_ = PrunableSizes(*model_);
  ws_ = model_->MakeWorkspace();
  model_name_ = model_name;
  Forget();
}

std::vector<uint32_t> LocalState::mlp_sizes() const {
  const auto* mlp = dynamic_cast<const Mlp*>(model_.get());
  if (mlp == nullptr) return {};
  return std::vector<uint32_t>(mlp->layer_sizes().begin(), mlp->layer_sizes().end());
}

bool LocalState::InitFromSeed(uint64_t seed, ModelInit init) {
  if (!model_ || held_version_ != 0) return false;
  params_.assign(model_->num_params(), 0.0f);
  InitialModel(*model_, init, seed, params_);
  held_version_ = 1;
  history_.Reset(1);
  return true;
}

Result<uint32_t> LocalState::Apply(std::span<const uint8_t> payload, std::span<const uint32_t> guide,
                                   const StepSupportFn* supports) {
  const uint32_t d = dim();
  if (params_.size() != d) Forget();
  std::vector<uint32_t> new_sizes;
  // A residual already loaded follows any shape change; one not loaded yet is
  // read at the new dimension when first needed.
  std::vector<float>* follower = residual_.size() == d && d != 0 ? &residual_ : nullptr;
  // Any shape change must prune this model (its architecture, CNN geometry
  // and sizes), not merely one of as many parameters: checked before the
  // payload touches the copy or the residual.
  std::optional<HeldModelShape> held;
  if (model_) held = HeldModelShape{unpruned_sizes_, PrunableSizes(*model_), CnnGeometryOf(*model_)};
  auto now_holds =
      ApplyModelPayload(payload, held_version_, params_, d, &new_sizes, follower, held ? &*held : nullptr, guide,
                        supports);
  if (!now_holds.ok()) {
    Forget();
    return now_holds.error();
  }
  std::unique_ptr<Model> reshaped;
  if (!new_sizes.empty() && model_ && new_sizes != PrunableSizes(*model_)) {
    // [prune]: the payload changed the model's shape (an MLP's hidden units or the CNN's channels).
    auto pruned = MakePrunedModel(new_sizes, CnnGeometryOf(*model_), model_name_);
    if (!pruned.ok()) {
      Forget();
      return pruned.error().WithContext("model payload's shape change");
    }
    reshaped = std::move(*pruned);
  }
  const uint32_t new_dim = reshaped ? static_cast<uint32_t>(reshaped->num_params()) : dim();
  if (params_.size() != new_dim) {
    // Refused before the model or the residual file changes.
    Forget();
    return InvalidArgumentError("model payload left " + std::to_string(params_.size()) + " parameters, the " +
                                model_name_ + " model has " + std::to_string(new_dim));
  }
  if (reshaped) {
    model_ = std::move(reshaped);
    ws_ = model_->MakeWorkspace();
    if (follower != nullptr) SaveResidualFile();
  }
  const uint32_t from = held_version_;
  held_version_ = *now_holds;
  RecordSteps(payload, guide, supports, from, !new_sizes.empty());
  return held_version_;
}

void LocalState::Forget() {
  params_.clear();
  held_version_ = 0;
  history_.Clear();
}

void LocalState::RecordSteps(std::span<const uint8_t> payload, std::span<const uint32_t> guide,
                             const StepSupportFn* supports, uint32_t from_version, bool reshaped) {
  if (history_.capacity() == 0) return;
  const uint32_t d = dim();
  std::vector<std::span<const uint8_t>> pieces;
  auto h = ParseModelPayload(payload, d, &pieces);
  if (!h.ok() || reshaped || h->shape_change) {
    history_.Clear();  // a shape change: the steps before it are of another model
    return;
  }
  if (h->kind == ModelPayloadKind::kFull) {
    history_.Reset(held_version_);
    return;
  }
  // Decoded a second time (ApplyModelPayload kept none of them): the steps as sent.
  auto steps = ChainPayloadSteps(payload, d, guide, supports);
  if (!steps.ok()) {
    history_.Clear();
    return;
  }
  history_.Append(from_version, std::move(*steps));
}

std::vector<float>& LocalState::Residual() {
  const uint32_t d = dim();
  if (residual_.size() != d) {
    auto loaded = LoadResidual(residual_path_, d);
    if (loaded.ok()) {
      residual_ = std::move(*loaded);
    } else {
      if (loaded.error().code() != ErrorCode::kNotFound) {
        spdlog::warn("{}; starting from a zero residual", loaded.error().message());
      }
      residual_.assign(d, 0.0f);
    }
  }
  return residual_;
}

void LocalState::SaveResidualFile() const {
  if (Status st = SaveResidual(residual_path_, residual_); !st.ok()) {
    spdlog::warn("residual not saved: {}", st.error().message());
  }
}

}  // namespace frugal::client
