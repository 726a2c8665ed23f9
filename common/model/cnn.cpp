#include "frugal/model/eigen.h"
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "frugal/core/random.h"
#include "frugal/model/model.h"
#include "conv.h"
#include "dense.h"
#include "loss.h"

namespace frugal {
namespace {

using MatMap = Eigen::Map<Eigen::MatrixXf>;
using ConstMatMap = Eigen::Map<const Eigen::MatrixXf>;
using VecMap = Eigen::Map<Eigen::VectorXf>;
using ConstVecMap = Eigen::Map<const Eigen::VectorXf>;

// Examples per internal pass: bounds the im2col buffers (about 0.7 MB per
// example for the default second convolution) whatever the batch size.
constexpr size_t kChunk = 32;

inline Eigen::Index Ix(size_t v) { return static_cast<Eigen::Index>(v); }

using internal::Col2Im;
using internal::Im2Col;
using internal::MaxPool;
using internal::MaxPoolBackward;

struct CnnWorkspace final : ModelWorkspace {
  AlignedVector<float> cols1, a1, p1, cols2, a2, p2, d1, logits;
  AlignedVector<uint32_t> idx1, idx2;
  AlignedVector<float> dlogits, dd1, dp2, dz2, dcols2, dp1, dz1;
};

void FillUniform(Rng& rng, float* w, size_t count, double limit) {
  for (size_t i = 0; i < count; ++i) w[i] = static_cast<float>((2.0 * rng.Uniform() - 1.0) * limit);
}

}  // namespace

Cnn::Cnn(const CnnConfig& config, std::string name) : cfg_(config), name_(std::move(name)) {
  assert(cfg_.kernel % 2 == 1 && cfg_.height >= 4 && cfg_.width >= 4);
  h1_ = cfg_.height;
  w1_ = cfg_.width;
  h2_ = h1_ / 2;
  w2_ = w1_ / 2;
  h3_ = h2_ / 2;
  w3_ = w2_ / 2;
  flat_ = h3_ * w3_ * cfg_.conv2_channels;
  const size_t kk = cfg_.kernel * cfg_.kernel;
  size_t off = 0;
  off_c1w_ = off;
  off += cfg_.conv1_channels * kk * cfg_.channels;
  off_c1b_ = off;
  off += cfg_.conv1_channels;
  off_c2w_ = off;
  off += cfg_.conv2_channels * kk * cfg_.conv1_channels;
  off_c2b_ = off;
  off += cfg_.conv2_channels;
  off_d1w_ = off;
  off += cfg_.dense_units * flat_;
  off_d1b_ = off;
  off += cfg_.dense_units;
  off_d2w_ = off;
  off += cfg_.num_classes * cfg_.dense_units;
  off_d2b_ = off;
  off += cfg_.num_classes;
  num_params_ = off;
}

FlopCount Cnn::flops_per_example() const {
  const double kk = static_cast<double>(cfg_.kernel * cfg_.kernel);
  const double c0 = static_cast<double>(cfg_.channels), c1 = static_cast<double>(cfg_.conv1_channels),
               c2 = static_cast<double>(cfg_.conv2_channels), d = static_cast<double>(cfg_.dense_units),
               nc = static_cast<double>(cfg_.num_classes);
  const double px1 = static_cast<double>(h1_ * w1_), px2 = static_cast<double>(h2_ * w2_);
  const double mac_c1 = px1 * c1 * kk * c0, mac_c2 = px2 * c2 * kk * c1;
  const double mac_d1 = d * static_cast<double>(flat_), mac_d2 = nc * d;
  const double bias = px1 * c1 + px2 * c2 + d + nc;
  FlopCount f;
  f.forward = 2 * (mac_c1 + mac_c2 + mac_d1 + mac_d2) + bias;
  // Weight gradients of all four layers, input gradients of all but the first, bias gradients.
  f.backward = 2 * (mac_c1 + mac_c2 + mac_d1 + mac_d2) + 2 * (mac_c2 + mac_d1 + mac_d2) + bias;
  return f;
}

void Cnn::InitParams(std::span<float> params, uint64_t seed) const {
  assert(params.size() == num_params_);
  Rng rng(seed);
  std::fill(params.begin(), params.end(), 0.0f);
  const size_t kk = cfg_.kernel * cfg_.kernel;
  const size_t fan_c1 = kk * cfg_.channels, fan_c2 = kk * cfg_.conv1_channels;
  float* p = params.data();
  FillUniform(rng, p + off_c1w_, cfg_.conv1_channels * fan_c1, std::sqrt(6.0 / static_cast<double>(fan_c1)));
  FillUniform(rng, p + off_c2w_, cfg_.conv2_channels * fan_c2, std::sqrt(6.0 / static_cast<double>(fan_c2)));
  FillUniform(rng, p + off_d1w_, cfg_.dense_units * flat_, std::sqrt(6.0 / static_cast<double>(flat_)));
  FillUniform(rng, p + off_d2w_, cfg_.num_classes * cfg_.dense_units,
              std::sqrt(6.0 / static_cast<double>(cfg_.dense_units + cfg_.num_classes)));
}

std::unique_ptr<ModelWorkspace> Cnn::MakeWorkspace() const { return std::make_unique<CnnWorkspace>(); }

double Cnn::RunChunk(std::span<const float> params, BatchView batch, size_t total_n, std::span<float> grad,
                     int32_t* predicted, ModelWorkspace& base) const {
  auto& ws = static_cast<CnnWorkspace&>(base);
  using internal::Grow;
  const size_t n = batch.n;
  const size_t k = cfg_.kernel, kk = k * k;
  const size_t c0 = cfg_.channels, c1 = cfg_.conv1_channels, c2 = cfg_.conv2_channels;
  const size_t d = cfg_.dense_units, nc = cfg_.num_classes;
  const size_t px1 = n * h1_ * w1_, px2 = n * h2_ * w2_, px3 = n * h3_ * w3_;
  const float* p = params.data();

  // conv1 + ReLU + pool
  float* cols1 = Grow(ws.cols1, kk * c0 * px1);
  Im2Col(batch.features, n, h1_, w1_, c0, k, cols1);
  ConstMatMap wc1(p + off_c1w_, Ix(c1), Ix(kk * c0));
  ConstVecMap bc1(p + off_c1b_, Ix(c1));
  MatMap a1(Grow(ws.a1, c1 * px1), Ix(c1), Ix(px1));
  a1.noalias() = wc1 * ConstMatMap(cols1, Ix(kk * c0), Ix(px1));
  a1 = (a1.colwise() + bc1).cwiseMax(0.0f);
  float* p1 = Grow(ws.p1, c1 * px2);
  MaxPool(a1.data(), n, h1_, w1_, c1, 2, p1, Grow(ws.idx1, c1 * px2));

  // conv2 + ReLU + pool
  float* cols2 = Grow(ws.cols2, kk * c1 * px2);
  Im2Col(p1, n, h2_, w2_, c1, k, cols2);
  ConstMatMap wc2(p + off_c2w_, Ix(c2), Ix(kk * c1));
  ConstVecMap bc2(p + off_c2b_, Ix(c2));
  MatMap a2(Grow(ws.a2, c2 * px2), Ix(c2), Ix(px2));
  a2.noalias() = wc2 * ConstMatMap(cols2, Ix(kk * c1), Ix(px2));
  a2 = (a2.colwise() + bc2).cwiseMax(0.0f);
  float* p2 = Grow(ws.p2, c2 * px3);
  MaxPool(a2.data(), n, h2_, w2_, c2, 2, p2, Grow(ws.idx2, c2 * px3));

  // dense + ReLU, dense
  ConstMatMap x3(p2, Ix(flat_), Ix(n));
  ConstMatMap wd1t(p + off_d1w_, Ix(flat_), Ix(d));
  ConstVecMap bd1(p + off_d1b_, Ix(d));
  MatMap h(Grow(ws.d1, d * n), Ix(d), Ix(n));
  h.noalias() = wd1t.transpose() * x3;
  h = (h.colwise() + bd1).cwiseMax(0.0f);
  ConstMatMap wd2t(p + off_d2w_, Ix(d), Ix(nc));
  ConstVecMap bd2(p + off_d2b_, Ix(nc));
  MatMap logits(Grow(ws.logits, nc * n), Ix(nc), Ix(n));
  internal::DenseForward(logits, wd2t, h);
  logits.colwise() += bd2;

  const bool backward = !grad.empty();
  float* dlog = Grow(ws.dlogits, nc * n);
  const double loss = internal::SoftmaxCrossEntropy(logits.data(), nc, n, batch.labels, dlog, backward,
                                                    1.0f / static_cast<float>(total_n), predicted);
  if (!backward) return loss;

  float* g = grad.data();
  ConstMatMap dl(dlog, Ix(nc), Ix(n));
  MatMap(g + off_d2w_, Ix(d), Ix(nc)).noalias() += h * dl.transpose();
  internal::BiasGradient(dlog, nc, n, 1.0f, true, g + off_d2b_);

  MatMap dh(Grow(ws.dd1, d * n), Ix(d), Ix(n));
  dh.noalias() = wd2t * dl;
  dh = (h.array() > 0.0f).select(dh, 0.0f);
  MatMap(g + off_d1w_, Ix(flat_), Ix(d)).noalias() += x3 * dh.transpose();
  internal::BiasGradient(dh.data(), d, n, 1.0f, true, g + off_d1b_);

  MatMap dx3(Grow(ws.dp2, flat_ * n), Ix(flat_), Ix(n));
  dx3.noalias() = wd1t * dh;
  float* dz2 = Grow(ws.dz2, c2 * px2);
  MaxPoolBackward(dx3.data(), ws.idx2.data(), c2 * px3, a2.data(), c2 * px2, dz2);

  ConstMatMap dz2m(dz2, Ix(c2), Ix(px2));
  ConstMatMap cols2m(cols2, Ix(kk * c1), Ix(px2));
  MatMap(g + off_c2w_, Ix(c2), Ix(kk * c1)).noalias() += dz2m * cols2m.transpose();
  internal::BiasGradient(dz2, c2, px2, 1.0f, true, g + off_c2b_);
  MatMap dcols2(Grow(ws.dcols2, kk * c1 * px2), Ix(kk * c1), Ix(px2));
  dcols2.noalias() = wc2.transpose() * dz2m;
  float* dp1 = Grow(ws.dp1, c1 * px2);
  Col2Im(dcols2.data(), n, h2_, w2_, c1, k, dp1);

  float* dz1 = Grow(ws.dz1, c1 * px1);
  MaxPoolBackward(dp1, ws.idx1.data(), c1 * px2, a1.data(), c1 * px1, dz1);
  ConstMatMap dz1m(dz1, Ix(c1), Ix(px1));
  MatMap(g + off_c1w_, Ix(c1), Ix(kk * c0)).noalias() += dz1m * ConstMatMap(cols1, Ix(kk * c0), Ix(px1)).transpose();
  internal::BiasGradient(dz1, c1, px1, 1.0f, true, g + off_c1b_);
  return loss;
}

double Cnn::LossAndGradient(std::span<const float> params, BatchView batch, std::span<float> grad,
                            ModelWorkspace& ws) const {
  assert(params.size() == num_params_);
  assert(grad.empty() || grad.size() == num_params_);
  std::fill(grad.begin(), grad.end(), 0.0f);
  if (batch.n == 0) return 0.0;
  double loss = 0.0;
  const size_t in = input_dim();
  for (size_t s = 0; s < batch.n; s += kChunk) {
    const size_t m = std::min(kChunk, batch.n - s);
    loss += RunChunk(params, BatchView{batch.features + s * in, batch.labels + s, m}, batch.n, grad, nullptr, ws);
  }
  return loss / static_cast<double>(batch.n);
}

double Cnn::Predict(std::span<const float> params, BatchView batch, std::span<int32_t> predicted,
                    ModelWorkspace& ws) const {
  assert(predicted.size() >= batch.n);
  double loss = 0.0;
  const size_t in = input_dim();
  for (size_t s = 0; s < batch.n; s += kChunk) {
    const size_t m = std::min(kChunk, batch.n - s);
    loss += RunChunk(params, BatchView{batch.features + s * in, batch.labels + s, m}, batch.n, {},
                     predicted.data() + s, ws);
  }
  return loss;
}

}  // namespace frugal
