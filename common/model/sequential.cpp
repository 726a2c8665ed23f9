#include "frugal/model/sequential.h"

#include "frugal/model/eigen.h"
#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <utility>

#include "frugal/core/random.h"
#include "conv.h"
#include "dense.h"
#include "dense_small.h"
#include "loss.h"

namespace frugal {
namespace {

using MatMap = Eigen::Map<Eigen::MatrixXf>;
using ConstMatMap = Eigen::Map<const Eigen::MatrixXf>;
using ConstVecMap = Eigen::Map<const Eigen::VectorXf>;
using Kind = LayerSpec::Kind;

inline Eigen::Index Ix(size_t v) { return static_cast<Eigen::Index>(v); }

// Examples per internal pass of a list with images: bounds the im2col buffers,
// as Cnn does.
constexpr size_t kImageChunk = 32;

struct SequentialWorkspace final : ModelWorkspace {
  std::vector<AlignedVector<float>> out;    // per layer: its output, (size x n) column-major
  std::vector<AlignedVector<float>> cols;   // per conv2d layer: its im2col patches
  std::vector<AlignedVector<uint32_t>> idx; // per maxpool layer: the winners
  std::vector<AlignedVector<float>> mask;   // per dropout layer: 0 or 1 / (1 - rate)
  AlignedVector<float> dlogits, delta_a, delta_b, dcols;
  double kernel_flops = 0;
};

}  // namespace

Sequential::Sequential(LayerPlan plan, std::string name) : plan_(std::move(plan)), name_(std::move(name)) {
  assert(!plan_.layers.empty() && plan_.layers.size() == plan_.outputs.size());
  size_t off = 0;
  bool seen_weighted = false;
  bool images = false;
  size_t widest = plan_.input.size();
  first_weighted_ = plan_.layers.size();
  for (size_t i = 0; i < plan_.layers.size(); ++i) {
    Layer l;
    l.spec = plan_.layers[i];
    l.in = i == 0 ? plan_.input : plan_.outputs[i - 1];
    l.out = plan_.outputs[i];
    l.input_grad = seen_weighted;
    widest = std::max(widest, l.out.size());
    if (l.spec.kind == Kind::kDense || l.spec.kind == Kind::kConv2d) {
      l.fan_in = l.spec.kind == Kind::kDense ? l.in.size() : l.spec.kernel * l.spec.kernel * l.in.channels;
      l.weights = off;
      off += l.fan_in * l.spec.units;
      l.bias = off;
      off += l.spec.units;
      if (!seen_weighted) first_weighted_ = i;
      seen_weighted = true;
    }
    images = images || l.spec.kind == Kind::kConv2d || l.spec.kind == Kind::kMaxPool;
    layers_.push_back(l);
  }
  assert(off == plan_.num_params);
  // A pass must index every tensor with 32 bits (the pooling winners).
  const size_t by_index = std::max<size_t>(1, std::numeric_limits<uint32_t>::max() / widest);
  chunk_ = images ? std::min(kImageChunk, by_index) : std::numeric_limits<size_t>::max();
}

void Sequential::InitParams(std::span<float> params, uint64_t seed) const {
  assert(params.size() == num_params());
  Rng rng(seed);
  std::fill(params.begin(), params.end(), 0.0f);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    if (l.spec.kind != Kind::kDense && l.spec.kind != Kind::kConv2d) continue;
    const double fan_in = static_cast<double>(l.fan_in), fan_out = static_cast<double>(l.spec.units);
    const double limit = i + 1 == layers_.size() ? std::sqrt(6.0 / (fan_in + fan_out)) : std::sqrt(6.0 / fan_in);
    float* w = params.data() + l.weights;
    for (size_t j = 0; j < l.fan_in * l.spec.units; ++j) {
      w[j] = static_cast<float>((2.0 * rng.Uniform() - 1.0) * limit);
    }
  }
}

std::unique_ptr<ModelWorkspace> Sequential::MakeWorkspace() const {
  auto ws = std::make_unique<SequentialWorkspace>();
  ws->out.resize(layers_.size());
  ws->cols.resize(layers_.size());
  ws->idx.resize(layers_.size());
  ws->mask.resize(layers_.size());
  return ws;
}

double Sequential::KernelFlops(const ModelWorkspace& ws) {
  return static_cast<const SequentialWorkspace&>(ws).kernel_flops;
}

double Sequential::RunChunk(std::span<const float> params, BatchView batch, size_t total_n, size_t chunk_start,
                            std::span<float> grad, int32_t* predicted, bool train, ModelWorkspace& base) const {
  auto& ws = static_cast<SequentialWorkspace&>(base);
  using internal::Grow;
  const size_t m = batch.n;
  const float* p = params.data();

  // Forward: each layer reads the previous layer's output (the batch first).
  const float* x = batch.features;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    const size_t in_size = l.in.size() * m, out_size = l.out.size() * m;
    float* y = Grow(ws.out[i], out_size);
    switch (l.spec.kind) {
      case Kind::kDense: {
        const size_t units = l.spec.units;
        // Mlp's choice of kernel, so that a dense stack rounds as Mlp does.
        if (units <= internal::kSmallDenseMaxOut || m <= 16) {
          internal::SmallDenseForward(x, m, l.fan_in, p + l.weights, p + l.bias, units, y);
        } else {
          MatMap z(y, Ix(units), Ix(m));
          internal::DenseForward(z, ConstMatMap(p + l.weights, Ix(l.fan_in), Ix(units)),
                                 ConstMatMap(x, Ix(l.fan_in), Ix(m)));
          z.colwise() += ConstVecMap(p + l.bias, Ix(units));
        }
        ws.kernel_flops += static_cast<double>(m) * (2.0 * static_cast<double>(l.fan_in * units) + units);
        break;
      }
      case Kind::kConv2d: {
        const size_t px = m * l.in.height * l.in.width, units = l.spec.units;
        float* cols = Grow(ws.cols[i], l.fan_in * px);
        internal::Im2Col(x, m, l.in.height, l.in.width, l.in.channels, l.spec.kernel, cols);
        MatMap a(y, Ix(units), Ix(px));
        a.noalias() = ConstMatMap(p + l.weights, Ix(units), Ix(l.fan_in)) * ConstMatMap(cols, Ix(l.fan_in), Ix(px));
        a.colwise() += ConstVecMap(p + l.bias, Ix(units));
        ws.kernel_flops += static_cast<double>(px) * (2.0 * static_cast<double>(l.fan_in * units) + units);
        break;
      }
      case Kind::kMaxPool:
        internal::MaxPool(x, m, l.in.height, l.in.width, l.in.channels, l.spec.kernel, y, Grow(ws.idx[i], out_size));
        break;
      case Kind::kRelu:
        for (size_t j = 0; j < out_size; ++j) y[j] = std::max(x[j], 0.0f);
        break;
      case Kind::kDropout:
        if (train && l.spec.rate > 0) {
          float* mask = Grow(ws.mask[i], out_size);
          Rng rng(DeriveSeed(DeriveSeed(ws.trainer.step_seed, i), chunk_start));
          const float keep = static_cast<float>(1.0 - l.spec.rate);
          const float scale = 1.0f / keep;
          for (size_t j = 0; j < out_size; ++j) {
            mask[j] = rng.UniformFloat() < keep ? scale : 0.0f;
            y[j] = x[j] * mask[j];
          }
        } else {
          std::copy(x, x + in_size, y);
        }
        break;
    }
    x = y;
  }

  const size_t classes = num_classes();
  const bool backward = !grad.empty();
  float* dz = Grow(ws.dlogits, classes * m);
  const double loss = internal::SoftmaxCrossEntropy(x, classes, m, batch.labels, dz, backward,
                                                    1.0f / static_cast<float>(total_n), predicted);
  if (!backward) return loss;

  // Backward from the logits down to the first weighted layer: dz holds
  // d(loss)/d(output of layer i); each step leaves d(loss)/d(its input) in da.
  size_t widest = 0;
  for (const Layer& l : layers_) widest = std::max({widest, l.in.size(), l.out.size()});
  float* da = Grow(ws.delta_a, widest * m);
  float* db = Grow(ws.delta_b, widest * m);
  for (size_t i = layers_.size(); i-- > first_weighted_;) {
    const Layer& l = layers_[i];
    const float* xin = i == 0 ? batch.features : ws.out[i - 1].data();
    const size_t in_size = l.in.size() * m, out_size = l.out.size() * m;
    float* din = da;
    switch (l.spec.kind) {
      case Kind::kDense: {
        const size_t units = l.spec.units;
        float* gw = grad.data() + l.weights;
        float* gb = grad.data() + l.bias;
        const ConstMatMap d(dz, Ix(units), Ix(m));
        if (units <= internal::kSmallDenseMaxOut) {
          // Accumulates across chunks: adds 1 * this chunk's gradient.
          internal::SmallDenseGradientStep(xin, m, l.fan_in, dz, units, 1.0f, gw, gb);
        } else {
          MatMap(gw, Ix(l.fan_in), Ix(units)).noalias() += ConstMatMap(xin, Ix(l.fan_in), Ix(m)) * d.transpose();
          internal::BiasGradient(dz, units, m, 1.0f, true, gb);
        }
        ws.kernel_flops += static_cast<double>(m) * (2.0 * static_cast<double>(l.fan_in * units) + units);
        if (l.input_grad) {
          MatMap(din, Ix(l.fan_in), Ix(m)).noalias() = ConstMatMap(p + l.weights, Ix(l.fan_in), Ix(units)) * d;
          ws.kernel_flops += 2.0 * static_cast<double>(m) * static_cast<double>(l.fan_in * units);
        }
        break;
      }
      case Kind::kConv2d: {
        const size_t px = m * l.in.height * l.in.width, units = l.spec.units;
        const ConstMatMap d(dz, Ix(units), Ix(px));
        const ConstMatMap cols(ws.cols[i].data(), Ix(l.fan_in), Ix(px));
        MatMap(grad.data() + l.weights, Ix(units), Ix(l.fan_in)).noalias() += d * cols.transpose();
        internal::BiasGradient(dz, units, px, 1.0f, true, grad.data() + l.bias);
        ws.kernel_flops += static_cast<double>(px) * (2.0 * static_cast<double>(l.fan_in * units) + units);
        if (l.input_grad) {
          MatMap dcols(Grow(ws.dcols, l.fan_in * px), Ix(l.fan_in), Ix(px));
          dcols.noalias() = ConstMatMap(p + l.weights, Ix(units), Ix(l.fan_in)).transpose() * d;
          internal::Col2Im(dcols.data(), m, l.in.height, l.in.width, l.in.channels, l.spec.kernel, din);
          ws.kernel_flops += 2.0 * static_cast<double>(px) * static_cast<double>(l.fan_in * units);
        }
        break;
      }
      case Kind::kMaxPool:
        internal::MaxPoolBackward(dz, ws.idx[i].data(), out_size, nullptr, in_size, din);
        break;
      case Kind::kRelu: {
        const float* y = ws.out[i].data();
        for (size_t j = 0; j < out_size; ++j) din[j] = y[j] > 0.0f ? dz[j] : 0.0f;
        break;
      }
      case Kind::kDropout:
        if (l.spec.rate > 0) {
          const float* mask = ws.mask[i].data();
          for (size_t j = 0; j < out_size; ++j) din[j] = dz[j] * mask[j];
        } else {
          std::copy(dz, dz + out_size, din);
        }
        break;
    }
    if (!l.input_grad) break;  // the first weighted layer: nothing below has parameters
    // The next layer down reads din as its output gradient; dz's buffer is free.
    dz = din;
    std::swap(da, db);
  }
  return loss;
}

double Sequential::LossAndGradient(std::span<const float> params, BatchView batch, std::span<float> grad,
                                   ModelWorkspace& ws) const {
  assert(params.size() == num_params());
  assert(grad.empty() || grad.size() == num_params());
  std::fill(grad.begin(), grad.end(), 0.0f);
  if (batch.n == 0) return 0.0;
  double loss = 0.0;
  const size_t in = input_dim();
  for (size_t s = 0; s < batch.n; s += chunk_) {
    const size_t m = std::min(chunk_, batch.n - s);
    loss += RunChunk(params, BatchView{batch.features + s * in, batch.labels + s, m}, batch.n, s, grad, nullptr,
                     true, ws);
  }
  return loss / static_cast<double>(batch.n);
}

double Sequential::Predict(std::span<const float> params, BatchView batch, std::span<int32_t> predicted,
                           ModelWorkspace& ws) const {
  assert(params.size() == num_params());
  assert(predicted.size() >= batch.n);
  double loss = 0.0;
  const size_t in = input_dim();
  for (size_t s = 0; s < batch.n; s += chunk_) {
    const size_t m = std::min(chunk_, batch.n - s);
    loss += RunChunk(params, BatchView{batch.features + s * in, batch.labels + s, m}, batch.n, s, {},
                     predicted.data() + s, false, ws);
  }
  return loss;
}

}  // namespace frugal
