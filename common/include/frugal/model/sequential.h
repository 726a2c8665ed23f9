// A general sequential model: runs any checked layer list (frugal/model/layers.h)
// of dense, conv2d ('same' padding), maxpool, ReLU and dropout layers, forward
// and backward, on the same dense and convolution kernels as Mlp and Cnn.
// MakeLayerModel keeps the built-in classes for the lists they implement (they
// fuse ReLU and pooling and are at least as fast) and builds a Sequential for
// every other valid list.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/model/layers.h"
#include "frugal/model/model.h"

namespace frugal {

// Parameters are laid out per weighted layer, in list order, as [weights,
// bias] with model.h's layouts: a list equal to a built-in model has the
// built-in's layout and InitParams gives the same values.
//
// Dropout is inverted dropout: while training (LossAndGradient, SgdStep) each
// value is kept with probability 1 - rate and scaled by 1 / (1 - rate); the
// mask is drawn from the trainer's seed of the current step
// (ModelWorkspace::TrainerBuffers::step_seed), the layer's index and the
// chunk of the batch, so a step is deterministic for a seed. Predict
// (evaluation) runs dropout as the identity.
//
// FLOPs (flops_per_example) are the plan's, counted by model.h's rules: the
// dense and convolution multiply-adds and bias adds, forward, the weight,
// bias and input gradients backward (no input gradient below the first
// weighted layer, which is never computed). ReLU, pooling and dropout are
// O(activations) compares or multiplies and are not counted, as ReLU and
// pooling are not counted for Mlp and Cnn.
class Sequential final : public Model {
 public:
  // plan must come from PlanLayers (shapes checked, last layer dense).
  explicit Sequential(LayerPlan plan, std::string name = "layers");

  std::string_view name() const override { return name_; }
  size_t num_params() const override { return plan_.num_params; }
  size_t input_dim() const override { return plan_.input.size(); }
  size_t num_classes() const override { return plan_.outputs.back().size(); }
  FlopCount flops_per_example() const override { return plan_.flops; }
  // He uniform for weighted layers other than the last, Glorot uniform for the
  // last, zero bias, drawn in layer order from one stream: as Mlp and Cnn.
  void InitParams(std::span<float> params, uint64_t seed) const override;
  std::unique_ptr<ModelWorkspace> MakeWorkspace() const override;
  double LossAndGradient(std::span<const float> params, BatchView batch, std::span<float> grad,
                         ModelWorkspace& ws) const override;
  double Predict(std::span<const float> params, BatchView batch, std::span<int32_t> predicted,
                 ModelWorkspace& ws) const override;

  const LayerPlan& plan() const { return plan_; }

  // FLOPs the dense and convolution kernels have run in ws (a workspace of
  // this model) since it was made, tallied from each kernel call's sizes by
  // the rules above: lets a test hold flops_per_example() to the work done.
  static double KernelFlops(const ModelWorkspace& ws);

 private:
  struct Layer {
    LayerSpec spec;
    TensorShape in, out;
    size_t weights = 0, bias = 0;  // offsets in params (weighted layers)
    size_t fan_in = 0;             // dense: in.size(); conv2d: kernel^2 * in.channels
    bool input_grad = false;       // backward computes this layer's input gradient
  };
  double RunChunk(std::span<const float> params, BatchView batch, size_t total_n, size_t chunk_start,
                  std::span<float> grad, int32_t* predicted, bool train, ModelWorkspace& ws) const;

  LayerPlan plan_;
  std::vector<Layer> layers_;
  size_t first_weighted_ = 0;
  size_t chunk_ = 0;  // examples per internal pass
  std::string name_;
};

}  // namespace frugal
