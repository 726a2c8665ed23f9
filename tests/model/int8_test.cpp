#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/data/dataset.h"
#include "frugal/model/int8.h"
#include "frugal/model/model.h"
#include "frugal/train/trainer.h"

namespace frugal {
namespace {

// Multiply-accumulates done by CountingGemm since the last reset: a kernel
// wrapper that counts the work it was asked to do and does it with the
// reference loop, so the test can compare the ledger's FLOPs with the work.
// A test double (not a mock of the model): it computes the real product.
double g_counted_macs = 0;
void CountingGemm(const uint8_t* a, size_t lda, const int8_t* w, size_t ldw, size_t m, size_t n, size_t k, int32_t* c,
                  size_t ldc) {
  g_counted_macs += static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  Int8Kernels()[0].gemm(a, lda, w, ldw, m, n, k, c, ldc);
}

const Dataset& TrainSet() {
  static const Result<Dataset> d = LoadFashionMnist(Split::kTrain);
  REQUIRE_MESSAGE(d.ok(), d.status().ToString());
  return *d;
}
const Dataset& TestSet() {
  static const Result<Dataset> d = LoadFashionMnist(Split::kTest);
  REQUIRE_MESSAGE(d.ok(), d.status().ToString());
  return *d;
}

TEST_SUITE("model") {
  TEST_CASE("Every int8 kernel equals the reference loop exactly, odd shapes, strides and extreme values included") {
    const auto kernels = Int8Kernels();
    REQUIRE(kernels[0].name == "reference");
    MESSAGE("int8 kernels compiled: ", kernels.size(), ", best: ", BestInt8Kernel().name);
    Rng rng(7);
    const size_t ks[] = {1, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 200, 784, 1001};
    for (int trial = 0; trial < 64; ++trial) {
      const size_t k = ks[static_cast<size_t>(trial) % std::size(ks)];
      const size_t m = 1 + rng.UniformInt(9), n = 1 + rng.UniformInt(13);
      const size_t lda = k + rng.UniformInt(5), ldw = k + rng.UniformInt(5);
      std::vector<uint8_t> a(m * lda);
      std::vector<int8_t> w(n * ldw);
      const int mode = trial % 4;  // 0 random, 1 all extreme (saturation check), 2 alternating signs, 3 sparse
      for (size_t i = 0; i < a.size(); ++i) {
        a[i] = mode == 1 ? 127 : static_cast<uint8_t>(rng.UniformInt(128));
        if (mode == 3 && rng.UniformInt(4) != 0) a[i] = 0;
      }
      for (size_t i = 0; i < w.size(); ++i) {
        w[i] = mode == 1 ? int8_t{-127} : mode == 2 ? static_cast<int8_t>(i % 2 ? 127 : -127)
                                                   : static_cast<int8_t>(static_cast<int>(rng.UniformInt(255)) - 127);
      }
      std::vector<int32_t> want(m * n, -1);
      for (size_t i = 0; i < m; ++i) {
        for (size_t j = 0; j < n; ++j) {
          int64_t s = 0;
          for (size_t p = 0; p < k; ++p) s += int64_t{a[i * lda + p]} * int64_t{w[j * ldw + p]};
          want[i * n + j] = static_cast<int32_t>(s);
        }
      }
      for (const Int8Kernel& kern : kernels) {
        std::vector<int32_t> got(m * n, 12345);
        kern.gemm(a.data(), lda, w.data(), ldw, m, n, k, got.data(), n);
        INFO("kernel ", kern.name, " m=", m, " n=", n, " k=", k, " mode=", mode);
        CHECK(got == want);
      }
    }
  }

  TEST_CASE("Per-channel weight quantization round trip stays within half a step of each row's scale") {
    Rng rng(3);
    const size_t rows = 7, cols = 33;
    std::vector<float> w(rows * cols);
    for (float& v : w) v = static_cast<float>(rng.Normal() * 0.1);
    for (size_t c = 0; c < cols; ++c) w[2 * cols + c] = 0.0f;  // an all-zero row
    w[5 * cols + 4] = 3.0f;                                      // an outlier sets only its own row's scale
    const QuantizedMatrix q = QuantizeRows(w.data(), rows, cols);
    std::vector<float> back(rows * cols);
    DequantizeRows(q, back.data());
    for (size_t r = 0; r < rows; ++r) {
      float amax = 0;
      int32_t sum = 0;
      for (size_t c = 0; c < cols; ++c) {
        amax = std::max(amax, std::fabs(w[r * cols + c]));
        sum += q.values[r * q.stride + c];
        CHECK(q.values[r * q.stride + c] >= -127);
        CHECK(std::fabs(back[r * cols + c] - w[r * cols + c]) <= q.scales[r] * 0.5f * 1.0001f);
      }
      CHECK(q.row_sums[r] == sum);
      if (amax > 0) CHECK(q.scales[r] == doctest::Approx(amax / 127.0f));
    }
    CHECK(q.scales[2] == 1.0f);
    CHECK(q.scales[5] > 10 * q.scales[4]);
  }

  TEST_CASE("Activation codes are 7-bit, zero-point 0 for non-negative vectors, within half a step") {
    Rng rng(5);
    for (bool signed_input : {false, true}) {
      std::vector<float> x(97);
      for (float& v : x) v = static_cast<float>(signed_input ? rng.Normal() : rng.Uniform());
      std::vector<uint8_t> codes(x.size());
      const ActivationScale s = QuantizeActivations(x.data(), x.size(), codes.data());
      if (!signed_input) CHECK(s.zero_point == 0);
      if (signed_input) CHECK(s.zero_point > 0);
      for (size_t i = 0; i < x.size(); ++i) {
        CHECK(codes[i] <= 127);
        const float back = static_cast<float>(static_cast<int32_t>(codes[i]) - s.zero_point) * s.scale;
        CHECK(std::fabs(back - x[i]) <= s.scale * 0.5f * 1.001f);
      }
    }
    std::vector<float> zeros(5, 0.0f);
    std::vector<uint8_t> codes(5, 9);
    const ActivationScale z = QuantizeActivations(zeros.data(), zeros.size(), codes.data());
    CHECK(z.zero_point == 0);
    CHECK(std::all_of(codes.begin(), codes.end(), [](uint8_t c) { return c == 0; }));
  }

  TEST_CASE("The int8 MLP's logits equal a plain reference over the same codes, with every kernel") {
    auto model = MakeModel("layers: dense(37) relu dense(19) relu dense(10)", 50, 10);
    REQUIRE(model.ok());
    std::vector<float> params((*model)->num_params());
    (*model)->InitParams(params, 11);
    Rng rng(12);
    for (size_t i = 0; i < params.size(); ++i) params[i] += static_cast<float>(rng.Normal() * 0.01);  // non-zero biases
    auto q = Int8Mlp::Quantize(**model, params);
    REQUIRE(q.ok());
    const size_t n = 9;
    std::vector<float> x(n * 50);
    for (float& v : x) v = static_cast<float>(rng.Normal());  // signed inputs: zero points in the first layer
    // Plain reference: quantize each example, integer dot products, the same float epilogue.
    std::vector<float> in = x, want;
    const auto& sizes = q->layer_sizes();
    for (size_t l = 0; l + 1 < sizes.size(); ++l) {
      const size_t fi = sizes[l], fo = sizes[l + 1];
      std::vector<float> out(n * fo);
      for (size_t e = 0; e < n; ++e) {
        std::vector<uint8_t> codes(fi);
        const ActivationScale s = QuantizeActivations(in.data() + e * fi, fi, codes.data());
        for (size_t j = 0; j < fo; ++j) {
          int64_t dot = 0;
          for (size_t p = 0; p < fi; ++p) {
            dot += (int64_t{codes[p]} - s.zero_point) * int64_t{q->weights(l).values[j * q->weights(l).stride + p]};
          }
          float v = static_cast<float>(static_cast<double>(dot)) * (s.scale * q->weights(l).scales[j]) + q->bias(l)[j];
          if (l + 2 < sizes.size()) v = std::max(v, 0.0f);
          out[e * fo + j] = v;
        }
      }
      in = out;
    }
    want = in;
    for (const Int8Kernel& kern : Int8Kernels()) {
      Int8Workspace ws;
      std::vector<float> got(n * 10);
      q->Forward(x.data(), n, got.data(), ws, &kern);
      INFO("kernel ", kern.name);
      CHECK(got == want);
    }
    // And close to the float model's own logits (quantization error only).
    float max_abs = 0, max_err = 0;
    {
      Int8Workspace ws;
      std::vector<float> got(n * 10);
      q->Forward(x.data(), n, got.data(), ws);
      std::vector<float> ref(n * 10);
      // Float forward through the same layout, plainly.
      std::vector<float> cur = x;
      size_t off = 0;
      for (size_t l = 0; l + 1 < sizes.size(); ++l) {
        const size_t fi = sizes[l], fo = sizes[l + 1];
        std::vector<float> out(n * fo);
        for (size_t e = 0; e < n; ++e) {
          for (size_t j = 0; j < fo; ++j) {
            double s = params[off + fi * fo + j];
            for (size_t p = 0; p < fi; ++p) s += double{params[off + j * fi + p]} * cur[e * fi + p];
            out[e * fo + j] = (l + 2 < sizes.size()) ? std::max(static_cast<float>(s), 0.0f) : static_cast<float>(s);
          }
        }
        off += fi * fo + fo;
        cur = out;
      }
      for (size_t i = 0; i < got.size(); ++i) {
        max_abs = std::max(max_abs, std::fabs(cur[i]));
        max_err = std::max(max_err, std::fabs(cur[i] - got[i]));
      }
    }
    INFO("max |logit| ", max_abs, " max error ", max_err);
    CHECK(max_err < 0.05f * max_abs);
  }

  TEST_CASE("Only dense models are quantized; a bad parameter vector is refused") {
    auto cnn = MakeModel("cnn");
    REQUIRE(cnn.ok());
    std::vector<float> p((*cnn)->num_params(), 0.0f);
    auto q = Int8Mlp::Quantize(**cnn, p);
    REQUIRE_FALSE(q.ok());
    CHECK(q.error().message().find("cnn") != std::string::npos);
    auto mlp = MakeModel("logreg");
    REQUIRE(mlp.ok());
    std::vector<float> short_params(10, 0.0f);
    CHECK_FALSE(Int8Mlp::Quantize(**mlp, short_params).ok());
    std::vector<float> nan_params((*mlp)->num_params(), 0.0f);
    nan_params[17] = std::nanf("");
    auto bad = Int8Mlp::Quantize(**mlp, nan_params);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message().find("parameter 17") != std::string::npos);
  }

  TEST_CASE("int8 accuracy on real Fashion-MNIST stays within a point of fp32, and its FLOPs are the kernel's work") {
    auto model = MakeModel("mlp");
    REQUIRE(model.ok());
    const Model& m = **model;
    std::vector<float> params(m.num_params());
    m.InitParams(params, 1);
    auto ws = m.MakeWorkspace();
    std::vector<uint32_t> rows(6000);
    std::iota(rows.begin(), rows.end(), 0u);
    REQUIRE(Train(m, params, TrainSet(), rows, TrainConfig{.epochs = 3, .batch_size = 32, .learning_rate = 0.05f, .seed = 1}, *ws).ok());
    std::vector<uint32_t> test_rows(2000);
    std::iota(test_rows.begin(), test_rows.end(), 0u);
    auto fp32 = Evaluate(m, params, TestSet(), test_rows, *ws);
    REQUIRE(fp32.ok());
    auto q = Int8Mlp::Quantize(m, params);
    REQUIRE(q.ok());
    Int8Workspace iws;
    auto int8 = EvaluateInt8(*q, TestSet(), test_rows, iws);
    REQUIRE(int8.ok());
    INFO("fp32 ", fp32->accuracy, " int8 ", int8->accuracy);
    CHECK(fp32->accuracy > 0.78);
    CHECK(std::fabs(int8->accuracy - fp32->accuracy) <= 0.01);
    // Batching does not change a per-example-quantized result.
    auto int8_b7 = EvaluateInt8(*q, TestSet(), test_rows, iws, 7);
    REQUIRE(int8_b7.ok());
    CHECK(int8_b7->accuracy == int8->accuracy);
    // The FLOPs reported are twice the multiply-accumulates the kernel ran.
    const Int8Kernel counting{"counting", &CountingGemm};
    g_counted_macs = 0;
    auto counted = EvaluateInt8(*q, TestSet(), test_rows, iws, 256, &counting);
    REQUIRE(counted.ok());
    CHECK(counted->accuracy == int8->accuracy);
    CHECK(counted->flops == 2 * g_counted_macs);
    CHECK(int8->flops == 2 * g_counted_macs);
    // Pixels quantized straight from their bytes: the float path's codes up
    // to a half-way tie that float rounding sends the other way (a pixel
    // code * 127 / max pixel of exactly k + 0.5), so logits agree to a few
    // quantization steps and the predictions agree.
    {
      const size_t n = 64, d = 784;
      std::vector<float> x(n * d);
      for (size_t i = 0; i < n; ++i) TestSet().CopyRow(i, x.data() + i * d);
      std::vector<float> from_floats(n * 10), from_bytes(n * 10);
      Int8Workspace a, b;
      q->Forward(x.data(), n, from_floats.data(), a);
      q->ForwardCoded(TestSet().codes.data(), d, TestSet().code_divisor, n, from_bytes.data(), b);
      float worst = 0;
      for (size_t i = 0; i < n * 10; ++i) worst = std::max(worst, std::fabs(from_floats[i] - from_bytes[i]));
      size_t agree = 0;
      for (size_t i = 0; i < n; ++i) {
        const auto arg = [&](const std::vector<float>& v) {
          return std::max_element(v.begin() + static_cast<std::ptrdiff_t>(i * 10),
                                  v.begin() + static_cast<std::ptrdiff_t>(i * 10 + 10)) - v.begin();
        };
        agree += arg(from_floats) == arg(from_bytes) ? 1 : 0;
      }
      INFO("largest logit difference ", worst, ", predictions agreeing ", agree, " of ", n);
      CHECK(worst < 0.15f);
      CHECK(agree >= n - 1);
    }
    CHECK(q->macs_per_example() == 784.0 * 200 + 200.0 * 200 + 200.0 * 10);
    // What the coordinator prices a device's int8 evaluation at, without quantizing.
    REQUIRE(Int8FlopsPerExample(m).has_value());
    CHECK(*Int8FlopsPerExample(m) == q->flops_per_example());
    CHECK_FALSE(Int8FlopsPerExample(**MakeModel("cnn")).has_value());
    CHECK(EncodeInt8Model(*q).size() == q->encoded_bytes());
    CHECK(q->encoded_bytes() < m.num_params() * sizeof(float) / 3);
  }
}

}  // namespace
}  // namespace frugal
