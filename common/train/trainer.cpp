#include "frugal/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "frugal/core/random.h"

namespace frugal {
namespace {

template <typename Vec>
typename Vec::value_type* Grow(Vec& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

Status CheckShapes(const Model& model, size_t num_params, const Dataset& data) {
  if (num_params != model.num_params()) {
    return InvalidArgumentError("params has " + std::to_string(num_params) + " values, model '" +
                                std::string(model.name()) + "' needs " + std::to_string(model.num_params()));
  }
  if (data.num_features != model.input_dim()) {
    return InvalidArgumentError("data has " + std::to_string(data.num_features) + " features, model '" +
                                std::string(model.name()) + "' takes " + std::to_string(model.input_dim()));
  }
  if (!data.consistent()) {
    return InvalidArgumentError("data set is inconsistent: " +
                                std::to_string(data.coded() ? data.codes.size() : data.features.size()) +
                                " feature values for " + std::to_string(data.size()) + " rows of " +
                                std::to_string(data.num_features));
  }
  return OkStatus();
}

// Copies rows into the contiguous batch buffers, checking index and label.
// Rows are scattered over the data set, so they mostly come from DRAM: while
// copying, it asks the cache for `next` (the next batch's rows), one row per
// row copied, so the fetches overlap this copy and the training step after it
// instead of stalling in one burst.
Status Gather(const Dataset& data, std::span<const uint32_t> rows, std::span<const uint32_t> next,
              size_t num_classes, float* features, int32_t* labels) {
  const size_t d = data.num_features;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i < next.size() && next[i] < data.size()) data.PrefetchRow(next[i]);
    const uint32_t r = rows[i];
    if (r >= data.size()) {
      return InvalidArgumentError("example index " + std::to_string(r) + " out of range (data set has " +
                                  std::to_string(data.size()) + " rows)");
    }
    const int32_t y = data.labels[r];
    if (y < 0 || static_cast<size_t>(y) >= num_classes) {
      return InvalidArgumentError("label " + std::to_string(y) + " of example " + std::to_string(r) +
                                  " out of range [0, " + std::to_string(num_classes) + ")");
    }
    data.CopyRow(r, features + i * d);
    labels[i] = y;
  }
  for (size_t i = rows.size(); i < next.size(); ++i) {
    if (next[i] < data.size()) data.PrefetchRow(next[i]);
  }
  return OkStatus();
}

}  // namespace

Result<TrainStats> Train(const Model& model, std::span<float> params, const Dataset& data,
                         std::span<const uint32_t> indices, const TrainConfig& cfg, ModelWorkspace& ws) {
  FRUGAL_RETURN_IF_ERROR(CheckShapes(model, params.size(), data));
  if (indices.empty()) return InvalidArgumentError("no training examples (indices is empty)");
  if (cfg.epochs < 0 || cfg.batch_size <= 0) {
    return InvalidArgumentError("epochs must be >= 0 and batch_size > 0, got " + std::to_string(cfg.epochs) +
                                " and " + std::to_string(cfg.batch_size));
  }
  if (!std::isfinite(cfg.learning_rate) || !std::isfinite(cfg.momentum) || !std::isfinite(cfg.prox_mu) ||
      !std::isfinite(cfg.weight_decay) || cfg.momentum < 0.0f || cfg.prox_mu < 0.0f || cfg.weight_decay < 0.0f) {
    return InvalidArgumentError("learning_rate, momentum, prox_mu and weight_decay must be finite; the last three >= 0");
  }
  for (uint32_t r : indices) {
    if (r >= data.size()) {
      return InvalidArgumentError("example index " + std::to_string(r) + " out of range (data set has " +
                                  std::to_string(data.size()) + " rows)");
    }
  }

  auto& buf = ws.trainer;
  const size_t p = params.size();
  const size_t bs = std::min(static_cast<size_t>(cfg.batch_size), indices.size());
  float* feats = Grow(buf.features, bs * data.num_features);
  int32_t* labs = Grow(buf.labels, bs);
  float* grad = Grow(buf.grad, p);
  float* vel = nullptr;
  if (cfg.momentum > 0.0f) {
    vel = Grow(buf.velocity, p);
    std::fill(vel, vel + p, 0.0f);
  }
  const float* anchor = nullptr;
  if (cfg.prox_mu > 0.0f) {
    std::copy(params.begin(), params.end(), Grow(buf.anchor, p));
    anchor = buf.anchor.data();
  }
  uint32_t* order = Grow(buf.order, indices.size());
  std::copy(indices.begin(), indices.end(), order);

  float* w = params.data();
  const float lr = cfg.learning_rate, mom = cfg.momentum, mu = cfg.prox_mu, wd = cfg.weight_decay;
  TrainStats stats;
  double loss_sum = 0.0;
  const size_t n = indices.size();
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    Rng rng(DeriveSeed(cfg.seed, static_cast<uint64_t>(epoch)));
    rng.Shuffle(std::span<uint32_t>(order, n));
    for (size_t s = 0; s < n; s += bs) {
      const size_t m = std::min(bs, n - s);
      const std::span<const uint32_t> next(order + s + m, std::min(bs, n - s - m));
      FRUGAL_RETURN_IF_ERROR(
          Gather(data, std::span<const uint32_t>(order + s, m), next, model.num_classes(), feats, labs));
      // Plain SGD: the model applies each layer's gradient as it computes it.
      const bool plain = vel == nullptr && anchor == nullptr && wd == 0.0f;
      const BatchView batch{feats, labs, m};
      // Streams 2^32 and up: the epochs' shuffles use 0, 1, ...
      buf.step_seed = DeriveSeed(cfg.seed, (uint64_t{1} << 32) + stats.steps);
      const double loss = plain ? model.SgdStep(params, batch, lr, ws)
                                : model.LossAndGradient(params, batch, std::span<float>(grad, p), ws);
      if (!std::isfinite(loss)) {
        return InvalidArgumentError("non-finite training loss at epoch " + std::to_string(epoch) + ", step " +
                                    std::to_string(stats.steps) + " (learning rate too high?)");
      }
      loss_sum += loss * static_cast<double>(m);
      // One fused pass: g = grad + wd*w + mu*(w - w0); v = mom*v + g; w -= lr*v.
      if (!plain) {
        for (size_t i = 0; i < p; ++i) {
          float g = grad[i] + wd * w[i];
          if (anchor != nullptr) g += mu * (w[i] - anchor[i]);
          if (vel != nullptr) {
            vel[i] = mom * vel[i] + g;
            g = vel[i];
          }
          w[i] -= lr * g;
        }
      }
      ++stats.steps;
    }
  }
  const FlopCount f = model.flops_per_example();
  stats.examples = static_cast<size_t>(cfg.epochs) * n;
  stats.mean_loss = stats.examples > 0 ? loss_sum / static_cast<double>(stats.examples) : 0.0;
  stats.flops = (f.forward + f.backward) * static_cast<double>(stats.examples);
  return stats;
}

Result<EvalResult> Evaluate(const Model& model, std::span<const float> params, const Dataset& data,
                            std::span<const uint32_t> indices, ModelWorkspace& ws, size_t batch_size) {
  FRUGAL_RETURN_IF_ERROR(CheckShapes(model, params.size(), data));
  if (batch_size == 0) return InvalidArgumentError("batch_size must be > 0");
  // Whole float data set: rows are already contiguous and need no copy.
  const bool all = indices.empty() && !data.coded();
  const size_t n = indices.empty() ? data.size() : indices.size();
  if (n == 0) return InvalidArgumentError("no examples to evaluate");
  auto& buf = ws.trainer;
  const size_t bs = std::min(batch_size, n);
  int32_t* pred = Grow(buf.predicted, bs);
  float* feats = all ? nullptr : Grow(buf.features, bs * data.num_features);
  int32_t* labs = all ? nullptr : Grow(buf.labels, bs);
  const size_t classes = model.num_classes();
  size_t correct = 0;
  double loss_sum = 0.0;
  for (size_t s = 0; s < n; s += bs) {
    const size_t m = std::min(bs, n - s);
    BatchView batch{};
    if (all) {
      // Whole data set: rows are already contiguous; only labels need checking.
      for (size_t i = s; i < s + m; ++i) {
        if (data.labels[i] < 0 || static_cast<size_t>(data.labels[i]) >= classes) {
          return InvalidArgumentError("label " + std::to_string(data.labels[i]) + " of example " + std::to_string(i) +
                                      " out of range [0, " + std::to_string(classes) + ")");
        }
      }
      batch = BatchView{data.row(s), data.labels.data() + s, m};
    } else {
      if (indices.empty()) {
        uint32_t* rows = Grow(buf.order, m);
        for (size_t i = 0; i < m; ++i) rows[i] = static_cast<uint32_t>(s + i);
        FRUGAL_RETURN_IF_ERROR(Gather(data, std::span<const uint32_t>(rows, m), {}, classes, feats, labs));
      } else {
        const std::span<const uint32_t> next = indices.subspan(s + m, std::min(bs, n - s - m));
        FRUGAL_RETURN_IF_ERROR(Gather(data, indices.subspan(s, m), next, classes, feats, labs));
      }
      batch = BatchView{feats, labs, m};
    }
    loss_sum += model.Predict(params, batch, std::span<int32_t>(pred, m), ws);
    for (size_t i = 0; i < m; ++i) correct += (pred[i] == batch.labels[i]) ? 1 : 0;
  }
  EvalResult r;
  r.examples = n;
  r.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  r.loss = loss_sum / static_cast<double>(n);
  r.flops = model.flops_per_example().forward * static_cast<double>(n);
  return r;
}

}  // namespace frugal
