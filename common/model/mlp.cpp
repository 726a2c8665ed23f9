#include "frugal/model/eigen.h"
#include <cassert>
#include <algorithm>
#include <cmath>
#include <utility>

#include "frugal/core/random.h"
#include "frugal/model/model.h"
#include "dense.h"
#include "dense_small.h"
#include "loss.h"

namespace frugal {
namespace {

using MatMap = Eigen::Map<Eigen::MatrixXf>;
using ConstMatMap = Eigen::Map<const Eigen::MatrixXf>;
using VecMap = Eigen::Map<Eigen::VectorXf>;
using ConstVecMap = Eigen::Map<const Eigen::VectorXf>;

struct MlpWorkspace final : ModelWorkspace {
  std::vector<AlignedVector<float>> acts;  // per layer: post-ReLU activations (logits for the last), out x n
  AlignedVector<float> delta_a, delta_b;   // ping-pong buffers for d(loss)/d(pre-activation)
};

inline Eigen::Index Ix(size_t v) { return static_cast<Eigen::Index>(v); }

}  // namespace

Mlp::Mlp(std::vector<size_t> layer_sizes, std::string name) : sizes_(std::move(layer_sizes)), name_(std::move(name)) {
  assert(sizes_.size() >= 2);
  for (size_t l = 0; l + 1 < sizes_.size(); ++l) {
    offsets_.push_back(num_params_);
    num_params_ += sizes_[l + 1] * sizes_[l] + sizes_[l + 1];
  }
}

FlopCount Mlp::flops_per_example() const {
  FlopCount f;
  for (size_t l = 0; l + 1 < sizes_.size(); ++l) {
    const double macs = static_cast<double>(sizes_[l]) * static_cast<double>(sizes_[l + 1]);
    const double bias = static_cast<double>(sizes_[l + 1]);
    f.forward += 2 * macs + bias;
    f.backward += 2 * macs + bias;      // weight and bias gradients
    if (l > 0) f.backward += 2 * macs;  // input gradient, skipped for the first layer
  }
  return f;
}

void Mlp::InitParams(std::span<float> params, uint64_t seed) const {
  assert(params.size() == num_params_);
  Rng rng(seed);
  const size_t layers = sizes_.size() - 1;
  for (size_t l = 0; l < layers; ++l) {
    const size_t in = sizes_[l], out = sizes_[l + 1];
    const double limit = (l + 1 == layers) ? std::sqrt(6.0 / static_cast<double>(in + out))
                                           : std::sqrt(6.0 / static_cast<double>(in));
    float* w = params.data() + offsets_[l];
    for (size_t i = 0; i < in * out; ++i) w[i] = static_cast<float>((2.0 * rng.Uniform() - 1.0) * limit);
    std::fill(w + in * out, w + in * out + out, 0.0f);
  }
}

std::unique_ptr<ModelWorkspace> Mlp::MakeWorkspace() const {
  auto ws = std::make_unique<MlpWorkspace>();
  ws->acts.resize(sizes_.size() - 1);
  return ws;
}

void Mlp::Forward(std::span<const float> params, BatchView batch, ModelWorkspace& base) const {
  auto& ws = static_cast<MlpWorkspace&>(base);
  const size_t layers = sizes_.size() - 1;
  const Eigen::Index n = Ix(batch.n);
  const float* in = batch.features;
  for (size_t l = 0; l < layers; ++l) {
    const Eigen::Index fan_in = Ix(sizes_[l]), fan_out = Ix(sizes_[l + 1]);
    const float* w = params.data() + offsets_[l];
    const float* bias = w + sizes_[l + 1] * sizes_[l];
    MatMap z(internal::Grow(ws.acts[l], sizes_[l + 1] * batch.n), fan_out, n);
    if (sizes_[l + 1] <= internal::kSmallDenseMaxOut || batch.n <= 16) {
      internal::SmallDenseForward(in, batch.n, sizes_[l], w, bias, sizes_[l + 1], z.data());
      if (l + 1 < layers) z = z.cwiseMax(0.0f);
    } else {
      ConstMatMap wt(w, fan_in, fan_out);
      ConstVecMap b(bias, fan_out);
      internal::DenseForward(z, wt, ConstMatMap(in, fan_in, n));
      if (l + 1 < layers) {
        z = (z.colwise() + b).cwiseMax(0.0f);
      } else {
        z.colwise() += b;
      }
    }
    in = z.data();
  }
}

double Mlp::LossAndGradient(std::span<const float> params, BatchView batch, std::span<float> grad,
                            ModelWorkspace& ws) const {
  assert(grad.empty() || grad.size() == num_params_);
  if (batch.n == 0) {
    std::fill(grad.begin(), grad.end(), 0.0f);
    return 0.0;
  }
  return Backprop(params, batch, grad, nullptr, 0.0f, ws);
}

double Mlp::SgdStep(std::span<float> params, BatchView batch, float learning_rate, ModelWorkspace& ws) const {
  if (batch.n == 0) return 0.0;
  return Backprop(params, batch, {}, params.data(), learning_rate, ws);
}

double Mlp::Backprop(std::span<const float> params, BatchView batch, std::span<float> grad, float* step,
                     float learning_rate, ModelWorkspace& base) const {
  assert(params.size() == num_params_);
  auto& ws = static_cast<MlpWorkspace&>(base);
  Forward(params, batch, ws);
  const size_t layers = sizes_.size() - 1;
  const size_t classes = sizes_.back();
  const Eigen::Index n = Ix(batch.n);
  size_t widest = 0;
  for (size_t l = 1; l < sizes_.size(); ++l) widest = std::max(widest, sizes_[l]);
  float* dz = internal::Grow(ws.delta_a, widest * batch.n);
  float* da = internal::Grow(ws.delta_b, widest * batch.n);
  const bool backward = step != nullptr || !grad.empty();
  const float scale = 1.0f / static_cast<float>(batch.n);
  const double loss = internal::SoftmaxCrossEntropy(ws.acts[layers - 1].data(), classes, batch.n, batch.labels, dz,
                                                    backward, scale, nullptr) /
                      static_cast<double>(batch.n);
  if (!backward || (step != nullptr && !std::isfinite(loss))) return loss;

  const float alpha = -learning_rate;
  for (size_t l = layers; l-- > 0;) {
    const Eigen::Index fan_in = Ix(sizes_[l]), fan_out = Ix(sizes_[l + 1]);
    const float* prev = (l == 0) ? batch.features : ws.acts[l - 1].data();
    ConstMatMap a_prev(prev, fan_in, n);
    ConstMatMap d(dz, fan_out, n);
    if (l > 0) {
      // The input gradient uses this layer's weights before a step changes them.
      ConstMatMap wt(params.data() + offsets_[l], fan_in, fan_out);
      MatMap dprev(da, fan_in, n);
      dprev.noalias() = wt * d;
      // ReLU: the activation is positive exactly where the gradient passes.
      dprev = (a_prev.array() > 0.0f).select(dprev, 0.0f);
    }
    const bool small = sizes_[l + 1] <= internal::kSmallDenseMaxOut;
    if (step != nullptr) {
      float* w = step + offsets_[l];
      float* b = w + sizes_[l + 1] * sizes_[l];
      if (small) {
        internal::SmallDenseGradientStep(prev, batch.n, sizes_[l], dz, sizes_[l + 1], alpha, w, b);
      } else {
        // One GEMM adds alpha * A * dZ^T into the weights: no gradient buffer,
        // no zeroing, no separate update pass over the layer.
        MatMap(w, fan_in, fan_out).noalias() += alpha * (a_prev * d.transpose());
        internal::BiasGradient(dz, sizes_[l + 1], batch.n, alpha, true, b);
      }
    } else {
      float* gw = grad.data() + offsets_[l];
      float* gb = gw + sizes_[l + 1] * sizes_[l];
      if (small) {
        internal::SmallDenseGradient(prev, batch.n, sizes_[l], dz, sizes_[l + 1], gw, gb);
      } else {
        MatMap(gw, fan_in, fan_out).noalias() = a_prev * d.transpose();
        internal::BiasGradient(dz, sizes_[l + 1], batch.n, 0.0f, false, gb);
      }
    }
    if (l > 0) std::swap(dz, da);
  }
  return loss;
}

double Mlp::InputGradient(std::span<const float> params, BatchView batch, std::span<float> dx,
                          std::span<int32_t> predicted, ModelWorkspace& base) const {
  assert(params.size() == num_params_ && dx.size() == batch.n * sizes_.front());
  assert(predicted.empty() || predicted.size() >= batch.n);
  if (batch.n == 0) return 0.0;
  auto& ws = static_cast<MlpWorkspace&>(base);
  Forward(params, batch, ws);
  const size_t layers = sizes_.size() - 1;
  const Eigen::Index n = Ix(batch.n);
  size_t widest = 0;
  for (size_t l = 1; l < sizes_.size(); ++l) widest = std::max(widest, sizes_[l]);
  float* dz = internal::Grow(ws.delta_a, widest * batch.n);
  float* da = internal::Grow(ws.delta_b, widest * batch.n);
  const double loss =
      internal::SoftmaxCrossEntropy(ws.acts[layers - 1].data(), sizes_.back(), batch.n, batch.labels, dz, true,
                                    1.0f / static_cast<float>(batch.n), predicted.empty() ? nullptr : predicted.data()) /
      static_cast<double>(batch.n);
  for (size_t l = layers; l-- > 0;) {
    const Eigen::Index fan_in = Ix(sizes_[l]), fan_out = Ix(sizes_[l + 1]);
    ConstMatMap wt(params.data() + offsets_[l], fan_in, fan_out);
    ConstMatMap d(dz, fan_out, n);
    if (l == 0) {
      MatMap(dx.data(), fan_in, n).noalias() = wt * d;
      break;
    }
    MatMap dprev(da, fan_in, n);
    dprev.noalias() = wt * d;
    dprev = (ConstMatMap(ws.acts[l - 1].data(), fan_in, n).array() > 0.0f).select(dprev, 0.0f);
    std::swap(dz, da);
  }
  return loss;
}

double Mlp::Predict(std::span<const float> params, BatchView batch, std::span<int32_t> predicted,
                    ModelWorkspace& base) const {
  assert(predicted.size() >= batch.n);
  if (batch.n == 0) return 0.0;
  auto& ws = static_cast<MlpWorkspace&>(base);
  Forward(params, batch, ws);
  float* scratch = internal::Grow(ws.delta_a, sizes_.back() * batch.n);
  return internal::SoftmaxCrossEntropy(ws.acts.back().data(), sizes_.back(), batch.n, batch.labels, scratch, false,
                                       0.0f, predicted.data());
}

}  // namespace frugal
