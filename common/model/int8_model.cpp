// Quantization and the int8 forward pass of frugal/model/int8.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "frugal/model/eigen.h"
#include "frugal/model/int8.h"
#include "loss.h"

namespace frugal {
namespace {

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutF32(std::vector<uint8_t>& out, float f) {
  uint32_t v;
  std::memcpy(&v, &f, sizeof v);
  PutU32(out, v);
}

}  // namespace

QuantizedMatrix QuantizeRows(const float* w, size_t rows, size_t cols) {
  QuantizedMatrix q;
  q.rows = rows;
  q.cols = cols;
  q.stride = Int8Stride(cols);
  q.values.assign(rows * q.stride, 0);
  q.scales.resize(rows);
  q.row_sums.resize(rows);
  for (size_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    float amax = 0.0f;
    for (size_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(row[c]));
    const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    int32_t sum = 0;
    for (size_t c = 0; c < cols; ++c) {
      const float v = std::clamp(std::nearbyint(row[c] / scale), -127.0f, 127.0f);
      q.values[r * q.stride + c] = static_cast<int8_t>(v);
      sum += static_cast<int32_t>(v);
    }
    q.scales[r] = scale;
    q.row_sums[r] = sum;
  }
  return q;
}

void DequantizeRows(const QuantizedMatrix& q, float* out) {
  for (size_t r = 0; r < q.rows; ++r) {
    for (size_t c = 0; c < q.cols; ++c) out[r * q.cols + c] = static_cast<float>(q.values[r * q.stride + c]) * q.scales[r];
  }
}

ActivationScale QuantizeActivations(const float* x, size_t n, uint8_t* out) {
  if (n == 0) return {};
  const Eigen::Map<const Eigen::ArrayXf> v(x, static_cast<Eigen::Index>(n));
  const float lo = std::min(0.0f, v.minCoeff()), hi = std::max(0.0f, v.maxCoeff());
  ActivationScale s;
  if (hi > lo) {
    s.scale = (hi - lo) / 127.0f;
    s.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / s.scale), 0.0f, 127.0f));
  }
  const float inv = 1.0f / s.scale;
  const float zp = static_cast<float>(s.zero_point);
  // Clamped first, so the value is non-negative and truncating v + 0.5 rounds
  // it to nearest (ties up); written so the compiler vectorises it.
  for (size_t i = 0; i < n; ++i) {
    const float q = std::min(std::max(x[i] * inv + zp, 0.0f), 127.0f);
    out[i] = static_cast<uint8_t>(static_cast<int32_t>(q + 0.5f));
  }
  return s;
}

Result<Int8Mlp> Int8Mlp::Quantize(const Model& model, std::span<const float> params) {
  const auto* mlp = dynamic_cast<const Mlp*>(&model);
  if (mlp == nullptr) {
    return InvalidArgumentError("int8 inference covers dense models (logreg, mlp, dense layer lists); model '" +
                                std::string(model.name()) + "' has layers without an int8 kernel");
  }
  if (params.size() != model.num_params()) {
    return InvalidArgumentError("int8 quantization: model '" + std::string(model.name()) + "' has " +
                                std::to_string(model.num_params()) + " parameters, got " +
                                std::to_string(params.size()));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (!std::isfinite(params[i])) {
      return InvalidArgumentError("int8 quantization: parameter " + std::to_string(i) + " is not finite");
    }
  }
  for (size_t l = 0; l + 1 < mlp->layer_sizes().size(); ++l) {
    if (mlp->layer_sizes()[l] > kInt8MaxFanIn) {
      return InvalidArgumentError("int8 quantization: layer " + std::to_string(l + 1) + " has " +
                                  std::to_string(mlp->layer_sizes()[l]) + " inputs, more than the int8 kernels' " +
                                  std::to_string(kInt8MaxFanIn));
    }
  }
  Int8Mlp q;
  q.sizes_ = mlp->layer_sizes();
  size_t off = 0;
  for (size_t l = 0; l + 1 < q.sizes_.size(); ++l) {
    const size_t in = q.sizes_[l], out = q.sizes_[l + 1];
    q.weights_.push_back(QuantizeRows(params.data() + off, out, in));
    q.bias_.emplace_back(params.begin() + static_cast<std::ptrdiff_t>(off + in * out),
                         params.begin() + static_cast<std::ptrdiff_t>(off + in * out + out));
    off += in * out + out;
  }
  return q;
}

double Int8Mlp::macs_per_example() const {
  double macs = 0;
  for (size_t l = 0; l + 1 < sizes_.size(); ++l) macs += static_cast<double>(sizes_[l]) * static_cast<double>(sizes_[l + 1]);
  return macs;
}

size_t Int8Mlp::encoded_bytes() const {
  size_t bytes = 4 + 1 + 4 + 4 * sizes_.size();
  for (size_t l = 0; l + 1 < sizes_.size(); ++l) bytes += sizes_[l + 1] * (sizes_[l] + 8);
  return bytes;
}

void Int8Mlp::Forward(const float* features, size_t n, float* logits, Int8Workspace& ws,
                      const Int8Kernel* kernel) const {
  Run(features, n, logits, ws, kernel);
}

void Int8Mlp::ForwardCoded(const uint8_t* codes, size_t row_stride, float divisor, size_t n, float* logits,
                           Int8Workspace& ws, const Int8Kernel* kernel) const {
  const size_t d = sizes_.front(), lda = Int8Stride(d);
  if (ws.codes.size() < n * lda) ws.codes.resize(n * lda);
  ws.scales.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* x = codes + i * row_stride;
    uint8_t* row = ws.codes.data() + i * lda;
    uint8_t top = 0;
    for (size_t p = 0; p < d; ++p) top = std::max(top, x[p]);
    // x = code / divisor >= 0, so the range is [0, top / divisor]: zero point 0.
    ActivationScale s;
    if (top > 0) s.scale = (static_cast<float>(top) / divisor) / 127.0f;
    const float f = top > 0 ? 127.0f / static_cast<float>(top) : 0.0f;
    for (size_t p = 0; p < d; ++p) row[p] = static_cast<uint8_t>(static_cast<int32_t>(static_cast<float>(x[p]) * f + 0.5f));
    std::memset(row + d, 0, lda - d);
    ws.scales[i] = s;
  }
  Run(nullptr, n, logits, ws, kernel);
}

void Int8Mlp::Run(const float* features, size_t n, float* logits, Int8Workspace& ws, const Int8Kernel* kernel) const {
  const Int8Kernel& k = kernel != nullptr ? *kernel : BestInt8Kernel();
  const size_t layers = sizes_.size() - 1;
  const float* in = features;
  for (size_t l = 0; l < layers; ++l) {
    const size_t fan_in = sizes_[l], fan_out = sizes_[l + 1];
    const size_t lda = Int8Stride(fan_in);
    ws.acc.resize(n * fan_out);
    if (l > 0 || features != nullptr) {  // else ForwardCoded has filled the first layer's codes
      if (ws.codes.size() < n * lda) ws.codes.resize(n * lda);
      ws.scales.resize(n);
      for (size_t i = 0; i < n; ++i) {
        uint8_t* row = ws.codes.data() + i * lda;
        ws.scales[i] = QuantizeActivations(in + i * fan_in, fan_in, row);
        std::memset(row + fan_in, 0, lda - fan_in);  // kernels read only k codes; kept zero all the same
      }
    }
    const QuantizedMatrix& w = weights_[l];
    k.gemm(ws.codes.data(), lda, w.values.data(), w.stride, n, fan_out, fan_in, ws.acc.data(), fan_out);
    const bool last = l + 1 == layers;
    std::vector<float>& out_buf = (l % 2 == 0) ? ws.act_a : ws.act_b;
    float* out = last ? logits : (out_buf.resize(n * fan_out), out_buf.data());
    const float* bias = bias_[l].data();
    for (size_t i = 0; i < n; ++i) {
      const float sa = ws.scales[i].scale;
      const int32_t zp = ws.scales[i].zero_point;
      const int32_t* acc = ws.acc.data() + i * fan_out;
      float* y = out + i * fan_out;
      // acc - zp * row_sum is the exact integer dot product of the centred
      // codes; both terms are at most 127 * 127 * fan_in < 2^31 (Quantize
      // caps fan_in at kInt8MaxFanIn), so int32 holds them.
      for (size_t j = 0; j < fan_out; ++j) {
        const float v = static_cast<float>(acc[j] - zp * w.row_sums[j]) * (sa * w.scales[j]) + bias[j];
        y[j] = last ? v : std::max(v, 0.0f);
      }
    }
    in = out;
  }
}

double Int8Mlp::Predict(BatchView batch, std::span<int32_t> predicted, Int8Workspace& ws,
                        const Int8Kernel* kernel) const {
  if (batch.n == 0) return 0.0;
  const size_t classes = num_classes();
  ws.scratch.resize(2 * classes * batch.n);
  float* logits = ws.scratch.data();
  Forward(batch.features, batch.n, logits, ws, kernel);
  return internal::SoftmaxCrossEntropy(logits, classes, batch.n, batch.labels, logits + classes * batch.n, false, 0.0f,
                                       predicted.data());
}

std::optional<double> Int8FlopsPerExample(const Model& model) {
  const auto* mlp = dynamic_cast<const Mlp*>(&model);
  if (mlp == nullptr) return std::nullopt;
  double macs = 0;
  const std::vector<size_t>& s = mlp->layer_sizes();
  for (size_t l = 0; l + 1 < s.size(); ++l) macs += static_cast<double>(s[l]) * static_cast<double>(s[l + 1]);
  return 2.0 * macs;
}

Result<EvalResult> EvaluateInt8(const Int8Mlp& model, const Dataset& data, std::span<const uint32_t> indices,
                                Int8Workspace& ws, size_t batch_size, const Int8Kernel* kernel) {
  if (data.num_features != model.input_dim()) {
    return InvalidArgumentError("int8 evaluation: data has " + std::to_string(data.num_features) +
                                " features, the model takes " + std::to_string(model.input_dim()));
  }
  if (!data.consistent()) return InvalidArgumentError("int8 evaluation: data set storage does not match its size");
  if (batch_size == 0) return InvalidArgumentError("batch_size must be > 0");
  const size_t n = indices.empty() ? data.size() : indices.size();
  if (n == 0) return InvalidArgumentError("no examples to evaluate");
  const size_t d = data.num_features, classes = model.num_classes();
  const size_t bs = std::min(batch_size, n);
  if (data.coded()) ws.input_codes.resize(bs * d); else ws.features.resize(bs * d);
  ws.predicted.resize(bs);
  std::vector<int32_t> labels(bs);
  size_t correct = 0;
  double loss_sum = 0;
  for (size_t s = 0; s < n; s += bs) {
    const size_t m = std::min(bs, n - s);
    for (size_t i = 0; i < m; ++i) {
      const size_t row = indices.empty() ? s + i : indices[s + i];
      if (row >= data.size()) {
        return InvalidArgumentError("int8 evaluation: index " + std::to_string(row) + " out of range [0, " +
                                    std::to_string(data.size()) + ")");
      }
      const int32_t label = data.labels[row];
      if (label < 0 || static_cast<size_t>(label) >= classes) {
        return InvalidArgumentError("label " + std::to_string(label) + " of example " + std::to_string(row) +
                                    " out of range [0, " + std::to_string(classes) + ")");
      }
      if (data.coded()) {
        std::memcpy(ws.input_codes.data() + i * d, data.codes.data() + row * d, d);
      } else {
        data.CopyRow(row, ws.features.data() + i * d);
      }
      labels[i] = label;
    }
    ws.scratch.resize(2 * classes * m);
    float* logits = ws.scratch.data();
    if (data.coded()) {
      // Pixels are already bytes: quantized straight from them, no float detour.
      model.ForwardCoded(ws.input_codes.data(), d, data.code_divisor, m, logits, ws, kernel);
    } else {
      model.Forward(ws.features.data(), m, logits, ws, kernel);
    }
    loss_sum += internal::SoftmaxCrossEntropy(logits, classes, m, labels.data(), logits + classes * m, false, 0.0f,
                                              ws.predicted.data());
    for (size_t i = 0; i < m; ++i) correct += ws.predicted[i] == labels[i] ? 1 : 0;
  }
  EvalResult r;
  r.examples = n;
  r.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  r.loss = loss_sum / static_cast<double>(n);
  r.flops = model.flops_per_example() * static_cast<double>(n);
  return r;
}

std::vector<uint8_t> EncodeInt8Model(const Int8Mlp& model) {
  std::vector<uint8_t> out = {'F', 'R', 'I', '8', 1};
  const auto& sizes = model.layer_sizes();
  PutU32(out, static_cast<uint32_t>(sizes.size() - 1));
  for (size_t s : sizes) PutU32(out, static_cast<uint32_t>(s));
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    const QuantizedMatrix& w = model.weights(l);
    for (float f : w.scales) PutF32(out, f);
    for (float f : model.bias(l)) PutF32(out, f);
    for (size_t r = 0; r < w.rows; ++r) {
      const auto* row = reinterpret_cast<const uint8_t*>(w.values.data() + r * w.stride);
      out.insert(out.end(), row, row + w.cols);
    }
  }
  return out;
}

}  // namespace frugal
