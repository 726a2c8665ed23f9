// Distillation of frugal/model/distill.h: a plain dense forward/backward on
// Eigen over Mlp's parameter layout, with soft-target gradients. The core
// trainer (frugal/train) takes hard labels only, so the student's loop is its
// own: the same SGD with heavy-ball momentum, on soft targets.
#include "frugal/model/distill.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

#include "frugal/core/random.h"
#include "frugal/model/eigen.h"

namespace frugal {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMat>;
using RowMap = Eigen::Map<RowMat>;
using ColMap = Eigen::Map<Eigen::MatrixXf>;
using ConstColMap = Eigen::Map<const Eigen::MatrixXf>;
inline Eigen::Index Ix(size_t v) { return static_cast<Eigen::Index>(v); }

std::vector<size_t> Offsets(const std::vector<size_t>& sizes) {
  std::vector<size_t> off;
  size_t at = 0;
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    off.push_back(at);
    at += sizes[l + 1] * sizes[l] + sizes[l + 1];
  }
  return off;
}

// acts[l] (sizes[l+1] x n, column-major: one example per column) after layer
// l, ReLU on all but the last (the logits). x is (sizes[0] x n).
void DenseForward(const std::vector<size_t>& sizes, const std::vector<size_t>& off, const float* params,
                  const float* x, size_t n, std::vector<Eigen::MatrixXf>& acts) {
  const size_t layers = sizes.size() - 1;
  acts.resize(layers);
  for (size_t l = 0; l < layers; ++l) {
    const size_t in = sizes[l], out = sizes[l + 1];
    ConstRowMap w(params + off[l], Ix(out), Ix(in));
    Eigen::Map<const Eigen::VectorXf> b(params + off[l] + in * out, Ix(out));
    const float* prev = l == 0 ? x : acts[l - 1].data();
    acts[l].resize(Ix(out), Ix(n));
    acts[l].noalias() = w * ConstColMap(prev, Ix(in), Ix(n));
    acts[l].colwise() += b;
    if (l + 1 < layers) acts[l] = acts[l].cwiseMax(0.0f);
  }
}

// Softmax of z / t per column into p.
void TemperedSoftmax(const float* z, size_t classes, double t, double* p) {
  double m = z[0];
  for (size_t c = 1; c < classes; ++c) m = std::max(m, static_cast<double>(z[c]));
  double sum = 0;
  for (size_t c = 0; c < classes; ++c) sum += (p[c] = std::exp((static_cast<double>(z[c]) - m) / t));
  for (size_t c = 0; c < classes; ++c) p[c] /= sum;
}

}  // namespace

Result<std::unique_ptr<Mlp>> MakeStudent(std::string_view spec, size_t input_dim, size_t num_classes) {
  if (input_dim == 0 || num_classes < 2) return InvalidArgumentError("student: bad input or class count");
  if (spec == "logreg") return std::make_unique<Mlp>(std::vector<size_t>{input_dim, num_classes}, "logreg");
  if (!spec.starts_with("mlp:")) {
    return InvalidArgumentError("distill.student '" + std::string(spec) + "' is not \"logreg\" or \"mlp:H[-H2...]\"");
  }
  std::vector<size_t> sizes = {input_dim};
  std::string_view rest = spec.substr(4);
  while (true) {
    const size_t dash = rest.find('-');
    const std::string_view item = rest.substr(0, dash);
    size_t width = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), width);
    if (ec != std::errc() || end != item.data() + item.size() || width == 0 || width > 65536) {
      return InvalidArgumentError("distill.student '" + std::string(spec) + "': hidden width '" + std::string(item) +
                                  "' is not an integer in [1, 65536]");
    }
    sizes.push_back(width);
    if (dash == std::string_view::npos) break;
    rest = rest.substr(dash + 1);
  }
  if (sizes.size() > 9) return InvalidArgumentError("distill.student '" + std::string(spec) + "': at most 8 hidden layers");
  sizes.push_back(num_classes);
  return std::make_unique<Mlp>(std::move(sizes), "student-" + std::string(spec));
}

Result<std::vector<float>> DenseLogits(const Model& teacher, std::span<const float> params, const Dataset& data,
                                       std::span<const uint32_t> rows) {
  const auto* mlp = dynamic_cast<const Mlp*>(&teacher);
  if (mlp == nullptr) {
    return InvalidArgumentError("distillation needs a dense teacher (logreg, mlp, dense layer lists); model '" +
                                std::string(teacher.name()) + "' is not one");
  }
  if (params.size() != teacher.num_params()) return InvalidArgumentError("distillation: teacher parameter count mismatch");
  if (data.num_features != teacher.input_dim() || !data.consistent()) {
    return InvalidArgumentError("distillation: pool has " + std::to_string(data.num_features) +
                                " features, the teacher takes " + std::to_string(teacher.input_dim()));
  }
  const std::vector<size_t>& sizes = mlp->layer_sizes();
  const std::vector<size_t> off = Offsets(sizes);
  const size_t d = data.num_features, classes = sizes.back();
  std::vector<float> logits(rows.size() * classes);
  constexpr size_t kBatch = 256;
  std::vector<float> x(kBatch * d);
  std::vector<Eigen::MatrixXf> acts;
  for (size_t s = 0; s < rows.size(); s += kBatch) {
    const size_t m = std::min(kBatch, rows.size() - s);
    for (size_t i = 0; i < m; ++i) {
      if (rows[s + i] >= data.size()) return InvalidArgumentError("distillation: pool row " + std::to_string(rows[s + i]) + " out of range");
      data.CopyRow(rows[s + i], x.data() + i * d);
    }
    DenseForward(sizes, off, params.data(), x.data(), m, acts);
    std::copy(acts.back().data(), acts.back().data() + m * classes, logits.begin() + static_cast<std::ptrdiff_t>(s * classes));
  }
  return logits;
}

double SoftTargetLoss(const Mlp& student, std::span<const float> params, const float* x, size_t n,
                      const float* targets, double temperature, std::span<float> grad, DistillWorkspace& ws) {
  const std::vector<size_t>& sizes = student.layer_sizes();
  const std::vector<size_t> off = Offsets(sizes);
  const size_t layers = sizes.size() - 1, classes = sizes.back();
  const double t = temperature;
  DenseForward(sizes, off, params.data(), x, n, ws.acts);
  // d(T^2 KL(p || q_T))/dz = T (q_T - p), averaged over the batch.
  Eigen::MatrixXf& g = ws.g;
  g.resize(Ix(classes), Ix(n));
  ws.q.resize(classes);
  double loss = 0;
  for (size_t i = 0; i < n; ++i) {
    const float* z = ws.acts.back().data() + i * classes;
    const float* p = targets + i * classes;
    TemperedSoftmax(z, classes, t, ws.q.data());
    for (size_t c = 0; c < classes; ++c) {
      const double pc = p[c], qc = ws.q[c];
      if (pc > 0) loss += t * t * pc * (std::log(pc) - std::log(std::max(qc, 1e-300)));
      g(Ix(c), Ix(i)) = static_cast<float>(t * (qc - pc) / static_cast<double>(n));
    }
  }
  if (grad.empty()) return loss / static_cast<double>(n);
  for (size_t l = layers; l-- > 0;) {
    const size_t in = sizes[l], out = sizes[l + 1];
    const float* prev = l == 0 ? x : ws.acts[l - 1].data();
    ConstColMap a_prev(prev, Ix(in), Ix(n));
    RowMap(grad.data() + off[l], Ix(out), Ix(in)).noalias() = g * a_prev.transpose();
    Eigen::Map<Eigen::VectorXf>(grad.data() + off[l] + in * out, Ix(out)) = g.rowwise().sum();
    if (l > 0) {
      ws.g_prev.noalias() = ConstRowMap(params.data() + off[l], Ix(out), Ix(in)).transpose() * g;
      g = (a_prev.array() > 0.0f).select(ws.g_prev, 0.0f);
    }
  }
  return loss / static_cast<double>(n);
}

Result<DistillStats> Distill(const Model& teacher, std::span<const float> teacher_params, const Mlp& student,
                             std::span<float> student_params, const Dataset& data, std::span<const uint32_t> pool,
                             const DistillConfig& cfg) {
  if (cfg.epochs < 1 || cfg.batch_size < 1) return InvalidArgumentError("distill.epochs and batch_size must be >= 1");
  if (!(cfg.temperature > 0) || !std::isfinite(cfg.temperature)) return InvalidArgumentError("distill.temperature must be > 0");
  if (!(cfg.learning_rate > 0) || !std::isfinite(cfg.learning_rate) || !(cfg.momentum >= 0 && cfg.momentum < 1)) {
    return InvalidArgumentError("distill.learning_rate must be > 0 and distill.momentum in [0, 1)");
  }
  if (pool.empty()) return InvalidArgumentError("distillation: empty pool");
  if (student_params.size() != student.num_params()) return InvalidArgumentError("distillation: student parameter count mismatch");
  if (student.input_dim() != teacher.input_dim() || student.num_classes() != teacher.num_classes()) {
    return InvalidArgumentError("distillation: student and teacher differ in input or classes");
  }
  FRUGAL_ASSIGN_OR_RETURN(std::vector<float> tlogits, DenseLogits(teacher, teacher_params, data, pool));
  const size_t classes = teacher.num_classes(), d = data.num_features, n = pool.size();
  const double t = cfg.temperature;
  // Soft targets once: the teacher does not change.
  std::vector<float> targets(n * classes);
  {
    std::vector<double> p(classes);
    for (size_t i = 0; i < n; ++i) {
      TemperedSoftmax(tlogits.data() + i * classes, classes, t, p.data());
      for (size_t c = 0; c < classes; ++c) targets[i * classes + c] = static_cast<float>(p[c]);
    }
  }
  std::vector<float> velocity(student_params.size(), 0.0f);
  std::vector<float> grad(student_params.size());
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  const size_t bs = std::min(static_cast<size_t>(cfg.batch_size), n);
  std::vector<float> x(bs * d), p(bs * classes);
  DistillWorkspace ws;
  DistillStats stats;
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    Rng rng(DeriveSeed(cfg.seed, static_cast<uint64_t>(epoch)));
    for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.UniformInt(i)]);
    double loss_sum = 0;
    for (size_t s = 0; s < n; s += bs) {
      const size_t m = std::min(bs, n - s);
      for (size_t i = 0; i < m; ++i) {
        data.CopyRow(pool[order[s + i]], x.data() + i * d);
        std::copy_n(targets.data() + static_cast<size_t>(order[s + i]) * classes, classes, p.data() + i * classes);
      }
      loss_sum += SoftTargetLoss(student, student_params, x.data(), m, p.data(), t, grad, ws) * static_cast<double>(m);
      for (size_t k = 0; k < grad.size(); ++k) {
        velocity[k] = cfg.momentum * velocity[k] + grad[k];
        student_params[k] -= cfg.learning_rate * velocity[k];
      }
    }
    const double mean = loss_sum / static_cast<double>(n);
    if (!std::isfinite(mean)) return InvalidArgumentError("distillation: loss is not finite in epoch " + std::to_string(epoch + 1));
    if (epoch == 0) stats.first_epoch_loss = mean;
    stats.last_epoch_loss = mean;
  }
  stats.examples = static_cast<size_t>(cfg.epochs) * n;
  const FlopCount sf = student.flops_per_example();
  stats.flops = teacher.flops_per_example().forward * static_cast<double>(n) +
                (sf.forward + sf.backward) * static_cast<double>(stats.examples);
  return stats;
}

}  // namespace frugal
