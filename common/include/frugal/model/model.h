// Models of the platform: an immutable architecture (logistic regression, MLP,
// CNN) whose parameters live outside it in one flat float vector, with exact
// forward/backward FLOP counts for the energy ledger. Forward/backward on Eigen.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

// FLOPs per example. Convention: a multiply-add counts 2 FLOPs, an add 1.
// Counted: the GEMM/convolution multiply-adds and the bias adds, forward; the
// weight-gradient and input-gradient multiply-adds and the bias-gradient adds,
// backward (no input gradient for the first layer, which is never computed).
// Not counted: ReLU, max-pooling, softmax/cross-entropy and the SGD update,
// which are O(activations) or O(params) and not multiply-adds.
struct FlopCount {
  double forward = 0;
  double backward = 0;
};

// A batch of n examples: features holds n rows of input_dim floats, row-major
// (each example contiguous); labels holds n class ids in [0, num_classes).
struct BatchView {
  const float* features;
  const int32_t* labels;
  size_t n;
};

// Allocator of 64-byte aligned storage (a cache line, one AVX-512 register).
// Eigen's vectorised reductions split work by address alignment, so scratch
// buffers that are always equally aligned make results bit-identical from one
// workspace to another.
template <typename T>
struct CacheAlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheAlignedAllocator() = default;
  template <typename U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) {}  // NOLINT: rebinding
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlign); }
  template <typename U>
  bool operator==(const CacheAlignedAllocator<U>&) const { return true; }
};
template <typename T>
using AlignedVector = std::vector<T, CacheAlignedAllocator<T>>;

// Per-thread scratch of a model, grown on demand and reused, so that a step
// allocates nothing once warm. Never share one between threads.
class ModelWorkspace {
 public:
  virtual ~ModelWorkspace() = default;

  // Buffers owned by the trainer (frugal/train): the gathered batch, the
  // gradient and optimizer state. Kept here so one workspace per thread serves
  // model and trainer, and Train() allocates nothing once warm.
  struct TrainerBuffers {
    AlignedVector<float> features;
    AlignedVector<int32_t> labels;
    AlignedVector<int32_t> predicted;
    AlignedVector<uint32_t> order;
    AlignedVector<float> grad;
    AlignedVector<float> velocity;
    AlignedVector<float> anchor;
    // The seed of the current step, set by the trainer before each step:
    // stochastic layers (dropout) draw their masks from it, so a step is
    // deterministic for the trainer's seed.
    uint64_t step_seed = 0;
  };
  TrainerBuffers trainer;
};

// An architecture. Immutable; every const method is thread-safe given one
// workspace per thread. Parameters are one flat vector laid out per layer as
// [weights, bias]; a dense layer's weights are an (out x in) row-major matrix
// (each unit's weights contiguous, as PyTorch's Linear), a convolution's an
// (out_channels x k*k*in_channels) column-major matrix over patches ordered
// (ky, kx, channel), channel fastest.
class Model {
 public:
  virtual ~Model() = default;
  virtual std::string_view name() const = 0;
  virtual size_t num_params() const = 0;
  virtual size_t input_dim() const = 0;
  virtual size_t num_classes() const = 0;
  virtual FlopCount flops_per_example() const = 0;
  // Fills params (size num_params()) deterministically from seed: He uniform
  // for layers followed by ReLU, Glorot uniform for the output layer, zero bias.
  virtual void InitParams(std::span<float> params, uint64_t seed) const = 0;
  // A fresh workspace for this model; one per thread.
  virtual std::unique_ptr<ModelWorkspace> MakeWorkspace() const = 0;
  // Mean softmax cross-entropy over the batch; if !grad.empty(), writes
  // d(mean loss)/d(params) into grad (overwrites). Sizes and labels must be
  // valid (the trainer checks them); ws must come from this model's MakeWorkspace().
  virtual double LossAndGradient(std::span<const float> params, BatchView batch, std::span<float> grad,
                                 ModelWorkspace& ws) const = 0;
  // Writes the argmax class per example into predicted (size n); returns the
  // SUM of cross-entropy losses over the batch. Same preconditions as above.
  virtual double Predict(std::span<const float> params, BatchView batch, std::span<int32_t> predicted,
                         ModelWorkspace& ws) const = 0;
  // One plain SGD step in place: params -= learning_rate * d(mean loss)/d(params);
  // returns the mean loss before the step. If that loss is not finite, params
  // are left unchanged. Equals LossAndGradient followed by the update up to
  // float rounding. The default does exactly that (through ws.trainer.grad);
  // models override it to apply each layer's gradient as it is computed,
  // never storing the whole gradient. Same preconditions as LossAndGradient.
  virtual double SgdStep(std::span<float> params, BatchView batch, float learning_rate, ModelWorkspace& ws) const;
};

// Multilayer perceptron with ReLU hidden layers and a softmax output.
// layer_sizes = {in, hidden..., out}; {in, out} is multinomial logistic regression.
class Mlp final : public Model {
 public:
  // Requires layer_sizes.size() >= 2 and every size > 0.
  explicit Mlp(std::vector<size_t> layer_sizes, std::string name = "mlp");

  std::string_view name() const override { return name_; }
  size_t num_params() const override { return num_params_; }
  size_t input_dim() const override { return sizes_.front(); }
  size_t num_classes() const override { return sizes_.back(); }
  FlopCount flops_per_example() const override;
  void InitParams(std::span<float> params, uint64_t seed) const override;
  std::unique_ptr<ModelWorkspace> MakeWorkspace() const override;
  double LossAndGradient(std::span<const float> params, BatchView batch, std::span<float> grad,
                         ModelWorkspace& ws) const override;
  double Predict(std::span<const float> params, BatchView batch, std::span<int32_t> predicted,
                 ModelWorkspace& ws) const override;
  double SgdStep(std::span<float> params, BatchView batch, float learning_rate, ModelWorkspace& ws) const override;

  const std::vector<size_t>& layer_sizes() const { return sizes_; }

  // The mean cross-entropy's gradient with respect to the input: d(loss)/d(x)
  // per example, row-major batch.n x input_dim into dx (its size), and the
  // argmax per example into predicted unless empty. Returns the mean loss.
  // What a trigger search (frugal/round/trigger_scan.h) steps on.
  double InputGradient(std::span<const float> params, BatchView batch, std::span<float> dx,
                       std::span<int32_t> predicted, ModelWorkspace& ws) const;

 private:
  // Runs the forward pass, leaving every layer's activations (logits last) in ws.
  void Forward(std::span<const float> params, BatchView batch, ModelWorkspace& ws) const;
  // Forward and backward. With step == nullptr, writes the gradient into grad
  // (if non-empty); otherwise adds -learning_rate * gradient to step (the
  // parameters themselves, which params views), layer by layer, each layer's
  // input gradient taken before its weights change. Returns the mean loss.
  double Backprop(std::span<const float> params, BatchView batch, std::span<float> grad, float* step,
                  float learning_rate, ModelWorkspace& ws) const;

  std::vector<size_t> sizes_;
  std::vector<size_t> offsets_;  // start of each layer's weights in params
  size_t num_params_ = 0;
  std::string name_;
};

// Two 'same' convolutions (ReLU, 2x2 max-pool each), a ReLU dense layer and a
// softmax output: the CNN of McMahan et al. 2017 with the default sizes.
// Input is height x width x channels, row-major with channel fastest (HWC).
struct CnnConfig {
  size_t height = 28;
  size_t width = 28;
  size_t channels = 1;
  size_t kernel = 5;  // odd
  size_t conv1_channels = 32;
  size_t conv2_channels = 64;
  size_t dense_units = 512;
  size_t num_classes = 10;
};

class Cnn final : public Model {
 public:
  // Requires every size > 0, an odd kernel, and height, width >= 4.
  explicit Cnn(const CnnConfig& config, std::string name = "cnn");

  std::string_view name() const override { return name_; }
  size_t num_params() const override { return num_params_; }
  size_t input_dim() const override { return cfg_.height * cfg_.width * cfg_.channels; }
  size_t num_classes() const override { return cfg_.num_classes; }
  FlopCount flops_per_example() const override;
  void InitParams(std::span<float> params, uint64_t seed) const override;
  std::unique_ptr<ModelWorkspace> MakeWorkspace() const override;
  double LossAndGradient(std::span<const float> params, BatchView batch, std::span<float> grad,
                         ModelWorkspace& ws) const override;
  double Predict(std::span<const float> params, BatchView batch, std::span<int32_t> predicted,
                 ModelWorkspace& ws) const override;

  const CnnConfig& config() const { return cfg_; }

 private:
  // Forward (and, if grad is non-empty, backward accumulating into grad) over
  // at most kChunk examples; returns the summed loss.
  double RunChunk(std::span<const float> params, BatchView batch, size_t total_n, std::span<float> grad,
                  int32_t* predicted, ModelWorkspace& ws) const;

  CnnConfig cfg_;
  std::string name_;
  size_t h1_, w1_, h2_, w2_, h3_, w3_;  // conv1 output = h1 x w1, after pool1 = h2 x w2, after pool2 = h3 x w3
  size_t flat_;                         // h3 * w3 * conv2_channels
  size_t off_c1w_, off_c1b_, off_c2w_, off_c2b_, off_d1w_, off_d1b_, off_d2w_, off_d2b_;
  size_t num_params_ = 0;
};

// Builds a model by name: "logreg" (input_dim -> num_classes), "mlp" or "2nn"
// (input_dim-200-200-num_classes, ReLU), "cnn" (McMahan et al. 2017; needs
// input_dim = 784, i.e. 28x28x1). Unknown names and bad sizes are errors.
Result<std::unique_ptr<Model>> MakeModel(std::string_view name, size_t input_dim = 784, size_t num_classes = 10);

}  // namespace frugal
