// int8 inference for dense models (logistic regression, MLPs of any depth):
// weights quantized symmetrically per output channel, activations per example
// (7-bit, with a zero point), exact int32 GEMM kernels (a plain reference
// loop, AVX2, AVX-VNNI, AVX512-VNNI, NEON, NEON dot product), chosen at
// compile time, and an evaluation whose FLOPs are the kernel's own work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/model/model.h"
#include "frugal/train/trainer.h"

namespace frugal {

// c[i*ldc + j] = sum_{p < k} a[i*lda + p] * w[j*ldw + p] for i < m, j < n, in
// int32, exactly. Activations a are unsigned and must be in [0, 127] (7 bits:
// AVX2's u8 x s8 pair sums then never saturate int16); weights w are signed in
// [-127, 127]. Overwrites c. Thread-safe; any k, tails included.
using Int8GemmFn = void (*)(const uint8_t* a, size_t lda, const int8_t* w, size_t ldw, size_t m, size_t n, size_t k,
                            int32_t* c, size_t ldc);

struct Int8Kernel {
  std::string_view name;  // "reference", "avx2", "avx-vnni", "avx512-vnni", "neon", "neon-dotprod"
  Int8GemmFn gemm;
};

// Every kernel compiled for this target, the plain reference loop first and
// the one models use (the widest the compiler target has) last.
std::span<const Int8Kernel> Int8Kernels();
const Int8Kernel& BestInt8Kernel();

// Symmetric per-row (per output channel) int8 quantization of a (rows x cols)
// row-major matrix: scale[r] = max|w[r,:]| / 127 (1 for an all-zero row),
// q = round(w / scale) in [-127, 127], so |w - q * scale| <= scale / 2.
// row_sums[r] = sum of q[r,:] (for activation zero points). Row r starts at
// values[r * stride]: rows are padded with zeros to a multiple of 64 bytes and
// the storage is 64-byte aligned, so a SIMD load never splits a cache line
// (on AMD Zen 4 that halved the AVX512-VNNI kernel's speed, measured).
inline constexpr size_t kInt8RowAlign = 64;
inline size_t Int8Stride(size_t cols) { return (cols + kInt8RowAlign - 1) / kInt8RowAlign * kInt8RowAlign; }
struct QuantizedMatrix {
  size_t rows = 0, cols = 0, stride = 0;
  AlignedVector<int8_t> values;  // rows * stride
  std::vector<float> scales;   // rows
  std::vector<int32_t> row_sums;
};
// Requires finite w.
QuantizedMatrix QuantizeRows(const float* w, size_t rows, size_t cols);
// out[r*cols + c] = values[r*stride + c] * scales[r] (dense, unpadded).
void DequantizeRows(const QuantizedMatrix& q, float* out);

// One example's activations as 7-bit codes: x ~ (code - zero_point) * scale.
// The range [min(0, min x), max(0, max x)] is spread over [0, 127], so a
// non-negative vector (pixels, ReLU outputs) has zero_point 0. Quantized per
// example (dynamic, no calibration set), so an evaluation's result does not
// depend on how its examples are batched or split across threads.
struct ActivationScale {
  float scale = 1.0f;
  int32_t zero_point = 0;
};
// Writes n codes into out; |x - (code - zero_point) * scale| <= scale / 2 for finite x.
ActivationScale QuantizeActivations(const float* x, size_t n, uint8_t* out);

// Widest layer input quantized: 127 * 127 * fan_in must fit int32.
inline constexpr size_t kInt8MaxFanIn = 131072;

// Scratch of an Int8Mlp forward pass; one per thread.
struct Int8Workspace {
  AlignedVector<uint8_t> codes;  // n rows of Int8Stride(in) codes, zero padded
  std::vector<int32_t> acc;
  std::vector<ActivationScale> scales;
  std::vector<float> act_a, act_b, scratch;
  std::vector<int32_t> predicted;
  std::vector<float> features;
  std::vector<uint8_t> input_codes;
};

// A dense model (Mlp: logistic regression or an MLP) quantized for int8
// inference. Layer l: y = scale_a * scale_w[j] * (sum (code - zp) * q[j,:]) + bias[j],
// ReLU between layers, float logits out. Immutable after Quantize().
class Int8Mlp {
 public:
  // kInvalidArgument for a model that is not dense (the CNN: its convolutions
  // have no int8 kernel yet), a parameter count that does not match,
  // non-finite parameters, or a layer wider than kInt8MaxFanIn inputs.
  static Result<Int8Mlp> Quantize(const Model& model, std::span<const float> params);

  const std::vector<size_t>& layer_sizes() const { return sizes_; }
  size_t input_dim() const { return sizes_.front(); }
  size_t num_classes() const { return sizes_.back(); }
  // Multiply-accumulates the int8 kernel runs per example (sum of in * out).
  double macs_per_example() const;
  // The int8 FLOPs per example the ledger prices: 2 per kernel multiply-accumulate
  // (model.h's convention). The float epilogue (scale, bias, ReLU) and the
  // activation quantization are O(activations) and not counted, as ReLU is not in fp32.
  double flops_per_example() const { return 2.0 * macs_per_example(); }
  // The model as stored for devices (EncodeInt8Model): int8 weights plus a
  // float scale and bias per output channel and a small header.
  size_t encoded_bytes() const;

  // Float logits of n examples (features row-major, input_dim each) into
  // logits[i*num_classes + c]. `kernel` null = BestInt8Kernel(). Thread-safe
  // with one workspace per thread.
  void Forward(const float* features, size_t n, float* logits, Int8Workspace& ws,
               const Int8Kernel* kernel = nullptr) const;
  // The same from byte-coded inputs (Dataset::codes: x = code / divisor,
  // rows row_stride apart): the first layer is quantized from the bytes
  // directly, with the scale Forward() would use (up to float rounding).
  void ForwardCoded(const uint8_t* codes, size_t row_stride, float divisor, size_t n, float* logits, Int8Workspace& ws,
                    const Int8Kernel* kernel = nullptr) const;
  // Argmax per example into predicted (size n); returns the summed
  // cross-entropy over the batch (labels must be in range).
  double Predict(BatchView batch, std::span<int32_t> predicted, Int8Workspace& ws,
                 const Int8Kernel* kernel = nullptr) const;

  const QuantizedMatrix& weights(size_t layer) const { return weights_[layer]; }
  const std::vector<float>& bias(size_t layer) const { return bias_[layer]; }

 private:
  // The layers from float features, or (features == nullptr) from the first
  // layer's codes and scales already in ws.
  void Run(const float* features, size_t n, float* logits, Int8Workspace& ws, const Int8Kernel* kernel) const;

  std::vector<size_t> sizes_;
  std::vector<QuantizedMatrix> weights_;
  std::vector<std::vector<float>> bias_;
};

// The int8 FLOPs per example of a model's quantization (Int8Mlp::
// flops_per_example()) without quantizing it; nullopt for a model that is not dense.
std::optional<double> Int8FlopsPerExample(const Model& model);

// Accuracy, mean loss and FLOPs (= flops_per_example() * examples: the int8
// kernel's multiply-accumulates, times 2) of the quantized model over the rows
// `indices` of data (empty = all), in batches. Errors as frugal::Evaluate.
Result<EvalResult> EvaluateInt8(const Int8Mlp& model, const Dataset& data, std::span<const uint32_t> indices,
                                Int8Workspace& ws, size_t batch_size = 256, const Int8Kernel* kernel = nullptr);

// The int8 model file: "FRI8", u8 format version 1, u32 layer count L, L+1 u32
// sizes, then per layer out f32 scales, out f32 biases and out*in int8
// weights; little-endian.
std::vector<uint8_t> EncodeInt8Model(const Int8Mlp& model);

}  // namespace frugal
