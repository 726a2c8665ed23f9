#include "frugal/model/prune.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "frugal/model/model.h"

namespace frugal {
namespace {

constexpr uint8_t kMagic[4] = {'F', 'R', 'S', 'C'};
constexpr uint8_t kFormat = 1;
constexpr uint8_t kCnnFormat = 2;
constexpr size_t kCnnSizes = 5;  // input channels, conv1, conv2, dense units, classes
constexpr uint32_t kMaxCnnImage = 4096;
constexpr uint32_t kMaxCnnKernel = 31;
constexpr uint32_t kMaxLayerSize = 1u << 20;
constexpr size_t kMaxLayers = 64;  // layer sizes, input and output included

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t GetU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

Status CheckCnnGeometry(const CnnGeometry& g) {
  if (g.height < 4 || g.height > kMaxCnnImage || g.width < 4 || g.width > kMaxCnnImage) {
    return InvalidArgumentError("shape change: CNN image " + std::to_string(g.height) + "x" + std::to_string(g.width) +
                                ", expected 4 to " + std::to_string(kMaxCnnImage) + " a side");
  }
  if (g.kernel % 2 == 0 || g.kernel > kMaxCnnKernel) {
    return InvalidArgumentError("shape change: CNN kernel " + std::to_string(g.kernel) + ", expected odd, 1 to " +
                                std::to_string(kMaxCnnKernel));
  }
  return OkStatus();
}

// Where each block of a Cnn's parameters starts (the layout of Cnn, model.h):
// conv weights are (out x k*k*in) column-major over patches (ky, kx, channel),
// channel fastest; the dense layer's weights are unit-major over the pooled
// map (pixel, channel), channel fastest; the output layer's are unit-major
// within each class.
struct CnnLayout {
  size_t kk, c0, c1, c2, d, nc, px3, flat;
  size_t c1w, c1b, c2w, c2b, d1w, d1b, d2w, d2b, total;
  CnnLayout(const CnnGeometry& g, std::span<const uint32_t> s)
      : kk(size_t{g.kernel} * g.kernel), c0(s[0]), c1(s[1]), c2(s[2]), d(s[3]), nc(s[4]),
        px3(size_t{g.height / 2 / 2} * (g.width / 2 / 2)), flat(px3 * c2) {
    c1w = 0;
    c1b = c1w + c1 * kk * c0;
    c2w = c1b + c1;
    c2b = c2w + c2 * kk * c1;
    d1w = c2b + c2;
    d1b = d1w + d * flat;
    d2w = d1b + d;
    d2b = d2w + nc * d;
    total = d2b + nc;
  }
};

CnnConfig CnnConfigOf(const CnnGeometry& g, std::span<const uint32_t> s) {
  return CnnConfig{.height = g.height, .width = g.width, .channels = s[0], .kernel = g.kernel,
                   .conv1_channels = s[1], .conv2_channels = s[2], .dense_units = s[3], .num_classes = s[4]};
}

std::vector<uint32_t> CnnParamMap(const MlpShapeChange& c) {
  const CnnLayout L(*c.cnn, c.old_sizes);
  const std::vector<uint32_t>&k1 = c.kept[0], &k2 = c.kept[1], &kd = c.kept[2];
  std::vector<uint32_t> map;
  map.reserve(ShapeParamCount(c.NewSizes(), c.cnn));
  auto put = [&map](size_t i) { map.push_back(static_cast<uint32_t>(i)); };
  for (size_t j = 0; j < L.kk * L.c0; ++j) {
    for (uint32_t o : k1) put(L.c1w + o + L.c1 * j);
  }
  for (uint32_t o : k1) put(L.c1b + o);
  for (size_t pos = 0; pos < L.kk; ++pos) {
    for (uint32_t ci : k1) {
      for (uint32_t o : k2) put(L.c2w + o + L.c2 * (pos * L.c1 + ci));
    }
  }
  for (uint32_t o : k2) put(L.c2b + o);
  for (uint32_t u : kd) {
    for (size_t pix = 0; pix < L.px3; ++pix) {
      for (uint32_t ch : k2) put(L.d1w + pix * L.c2 + ch + L.flat * u);
    }
  }
  for (uint32_t u : kd) put(L.d1b + u);
  for (size_t cls = 0; cls < L.nc; ++cls) {
    for (uint32_t u : kd) put(L.d2w + u + L.d * cls);
  }
  for (size_t cls = 0; cls < L.nc; ++cls) put(L.d2b + cls);
  return map;
}

// The widths[l] highest scores of each layer (ties: the lower index), ascending.
std::vector<std::vector<uint32_t>> KeepTop(const std::vector<std::vector<double>>& scores,
                                           std::span<const uint32_t> widths) {
  std::vector<std::vector<uint32_t>> kept;
  for (size_t l = 0; l < scores.size(); ++l) {
    std::vector<uint32_t> order(scores[l].size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t a, uint32_t b) { return scores[l][a] > scores[l][b]; });
    order.resize(std::min<size_t>(widths[l], order.size()));
    std::sort(order.begin(), order.end());
    kept.push_back(std::move(order));
  }
  return kept;
}

}  // namespace

size_t MlpShapeChange::OldParamCount() const { return ShapeParamCount(old_sizes, cnn); }
size_t MlpShapeChange::NewParamCount() const { return ShapeParamCount(NewSizes(), cnn); }

size_t ShapeParamCount(std::span<const uint32_t> sizes, const std::optional<CnnGeometry>& cnn) {
  if (!cnn) return MlpParamCount(sizes);
  return sizes.size() == kCnnSizes ? CnnLayout(*cnn, sizes).total : 0;
}

double ShapeTrainFlops(std::span<const uint32_t> sizes, const std::optional<CnnGeometry>& cnn) {
  if (!cnn) return MlpTrainFlops(sizes);
  if (sizes.size() != kCnnSizes) return 0;
  const FlopCount f = Cnn(CnnConfigOf(*cnn, sizes)).flops_per_example();
  return f.forward + f.backward;
}

std::vector<uint32_t> PrunableSizes(const Model& model) {
  if (const auto* mlp = dynamic_cast<const Mlp*>(&model); mlp != nullptr && mlp->layer_sizes().size() >= 3) {
    return std::vector<uint32_t>(mlp->layer_sizes().begin(), mlp->layer_sizes().end());
  }
  if (const auto* cnn = dynamic_cast<const Cnn*>(&model); cnn != nullptr) {
    const CnnConfig& c = cnn->config();
    return {static_cast<uint32_t>(c.channels), static_cast<uint32_t>(c.conv1_channels),
            static_cast<uint32_t>(c.conv2_channels), static_cast<uint32_t>(c.dense_units),
            static_cast<uint32_t>(c.num_classes)};
  }
  return {};
}

std::optional<CnnGeometry> CnnGeometryOf(const Model& model) {
  const auto* cnn = dynamic_cast<const Cnn*>(&model);
  if (cnn == nullptr) return std::nullopt;
  const CnnConfig& c = cnn->config();
  return CnnGeometry{static_cast<uint32_t>(c.height), static_cast<uint32_t>(c.width), static_cast<uint32_t>(c.kernel)};
}

Result<std::unique_ptr<Model>> MakePrunedModel(std::span<const uint32_t> sizes, const std::optional<CnnGeometry>& cnn,
                                               std::string name) {
  if (std::ranges::any_of(sizes, [](uint32_t s) { return s == 0; })) {
    return InvalidArgumentError("a pruned model's layer sizes must be positive");
  }
  if (!cnn) {
    if (sizes.size() < 2) return InvalidArgumentError("a pruned MLP needs at least 2 layer sizes");
    return std::unique_ptr<Model>(new Mlp(std::vector<size_t>(sizes.begin(), sizes.end()), std::move(name)));
  }
  if (sizes.size() != kCnnSizes) {
    return InvalidArgumentError("a pruned CNN has " + std::to_string(kCnnSizes) + " sizes, got " +
                                std::to_string(sizes.size()));
  }
  FRUGAL_RETURN_IF_ERROR(CheckCnnGeometry(*cnn));
  return std::unique_ptr<Model>(new Cnn(CnnConfigOf(*cnn, sizes), std::move(name)));
}

Status CheckPruneConfig(const PruneConfig& c) {
  if (!(c.target_flops_fraction > 0 && c.target_flops_fraction <= 1)) {
    return InvalidArgumentError("prune.target_flops_fraction must be in (0, 1], got " +
                                std::to_string(c.target_flops_fraction));
  }
  if (c.steps == 0) return InvalidArgumentError("prune.steps must be at least 1");
  if (c.every == 0) return InvalidArgumentError("prune.every must be at least 1");
  if (c.start_round == 0) return InvalidArgumentError("prune.start_round must be at least 1");
  return OkStatus();
}

std::vector<uint32_t> MlpShapeChange::NewSizes() const {
  std::vector<uint32_t> s = old_sizes;
  for (size_t l = 0; l < kept.size() && l + 1 < s.size(); ++l) s[l + 1] = static_cast<uint32_t>(kept[l].size());
  return s;
}

size_t MlpParamCount(std::span<const uint32_t> sizes) {
  size_t n = 0;
  for (size_t l = 0; l + 1 < sizes.size(); ++l) n += size_t{sizes[l + 1]} * sizes[l] + sizes[l + 1];
  return n;
}

double MlpTrainFlops(std::span<const uint32_t> sizes) {
  double f = 0;
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    const double macs = static_cast<double>(sizes[l]) * static_cast<double>(sizes[l + 1]);
    f += 2 * (2 * macs + sizes[l + 1]);  // forward; weight and bias gradients
    if (l > 0) f += 2 * macs;            // input gradient
  }
  return f;
}

Status CheckShapeChange(const MlpShapeChange& c) {
  if (c.old_sizes.size() < 3 || c.old_sizes.size() > kMaxLayers) {
    return InvalidArgumentError("shape change: " + std::to_string(c.old_sizes.size()) +
                                " layer sizes, expected 3 to " + std::to_string(kMaxLayers));
  }
  for (size_t l = 0; l < c.old_sizes.size(); ++l) {
    if (c.old_sizes[l] == 0 || c.old_sizes[l] > kMaxLayerSize) {
      return InvalidArgumentError("shape change: layer size " + std::to_string(l) + " is " +
                                  std::to_string(c.old_sizes[l]) + ", expected 1 to " + std::to_string(kMaxLayerSize));
    }
  }
  if (c.cnn) {
    FRUGAL_RETURN_IF_ERROR(CheckCnnGeometry(*c.cnn));
    if (c.old_sizes.size() != kCnnSizes) {
      return InvalidArgumentError("shape change: a CNN has " + std::to_string(kCnnSizes) + " layer sizes, got " +
                                  std::to_string(c.old_sizes.size()));
    }
  }
  if (c.kept.size() + 2 != c.old_sizes.size()) {
    return InvalidArgumentError("shape change: " + std::to_string(c.kept.size()) + " kept lists for " +
                                std::to_string(c.old_sizes.size() - 2) + " hidden layers");
  }
  for (size_t l = 0; l < c.kept.size(); ++l) {
    const std::vector<uint32_t>& k = c.kept[l];
    if (k.empty()) return InvalidArgumentError("shape change: hidden layer " + std::to_string(l) + " keeps no unit");
    for (size_t i = 0; i < k.size(); ++i) {
      if (k[i] >= c.old_sizes[l + 1] || (i > 0 && k[i] <= k[i - 1])) {
        return InvalidArgumentError("shape change: hidden layer " + std::to_string(l) +
                                    "'s kept units are not ascending and below " + std::to_string(c.old_sizes[l + 1]));
      }
    }
  }
  return OkStatus();
}

std::vector<uint32_t> ShapeChangeParamMap(const MlpShapeChange& c) {
  if (c.cnn) return CnnParamMap(c);
  const std::vector<uint32_t>& s = c.old_sizes;
  std::vector<uint32_t> map;
  map.reserve(MlpParamCount(c.NewSizes()));
  std::vector<uint32_t> all_in, all_out;
  size_t offset = 0;
  for (size_t l = 0; l + 1 < s.size(); ++l) {
    const uint32_t in = s[l], out = s[l + 1];
    if (l == 0) {
      all_in.resize(in);
      std::iota(all_in.begin(), all_in.end(), 0u);
    }
    const std::vector<uint32_t>& ins = l == 0 ? all_in : c.kept[l - 1];
    if (l + 2 == s.size()) {
      all_out.resize(out);
      std::iota(all_out.begin(), all_out.end(), 0u);
    }
    const std::vector<uint32_t>& outs = l + 2 == s.size() ? all_out : c.kept[l];
    for (uint32_t o : outs) {
      for (uint32_t i : ins) map.push_back(static_cast<uint32_t>(offset + size_t{o} * in + i));
    }
    for (uint32_t o : outs) map.push_back(static_cast<uint32_t>(offset + size_t{out} * in + o));
    offset += size_t{out} * in + out;
  }
  return map;
}

std::vector<float> ApplyParamMap(std::span<const uint32_t> map, std::span<const float> in) {
  std::vector<float> out(map.size());
  for (size_t i = 0; i < map.size(); ++i) out[i] = in[map[i]];
  return out;
}

std::vector<std::vector<double>> UnitScores(std::span<const uint32_t> sizes, std::span<const float> params) {
  std::vector<size_t> offsets;
  size_t offset = 0;
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    offsets.push_back(offset);
    offset += size_t{sizes[l + 1]} * sizes[l] + sizes[l + 1];
  }
  std::vector<std::vector<double>> scores;
  for (size_t l = 1; l + 1 < sizes.size(); ++l) {
    const size_t in = sizes[l - 1], units = sizes[l], next = sizes[l + 1];
    const float* w = params.data() + offsets[l - 1];
    const float* b = w + units * in;
    const float* w_next = params.data() + offsets[l];
    std::vector<double> s(units, 0.0);
    for (size_t u = 0; u < units; ++u) {
      double sum = static_cast<double>(b[u]) * b[u];
      for (size_t i = 0; i < in; ++i) sum += static_cast<double>(w[u * in + i]) * w[u * in + i];
      for (size_t o = 0; o < next; ++o) sum += static_cast<double>(w_next[o * units + u]) * w_next[o * units + u];
      s[u] = std::sqrt(sum);
    }
    scores.push_back(std::move(s));
  }
  return scores;
}

MlpShapeChange ChooseKeptUnits(std::span<const uint32_t> sizes, std::span<const float> params,
                               std::span<const uint32_t> widths) {
  MlpShapeChange c;
  c.old_sizes.assign(sizes.begin(), sizes.end());
  c.kept = KeepTop(UnitScores(sizes, params), widths);
  return c;
}

std::vector<std::vector<double>> CnnUnitScores(const CnnGeometry& cnn, std::span<const uint32_t> sizes,
                                               std::span<const float> params) {
  const CnnLayout L(cnn, sizes);
  const float* p = params.data();
  auto sq = [p](size_t i) { return static_cast<double>(p[i]) * p[i]; };
  std::vector<std::vector<double>> scores(3);
  scores[0].assign(L.c1, 0.0);
  for (size_t o = 0; o < L.c1; ++o) {
    double sum = sq(L.c1b + o);
    for (size_t j = 0; j < L.kk * L.c0; ++j) sum += sq(L.c1w + o + L.c1 * j);
    for (size_t pos = 0; pos < L.kk; ++pos) {
      for (size_t o2 = 0; o2 < L.c2; ++o2) sum += sq(L.c2w + o2 + L.c2 * (pos * L.c1 + o));
    }
    scores[0][o] = std::sqrt(sum);
  }
  scores[1].assign(L.c2, 0.0);
  for (size_t o = 0; o < L.c2; ++o) {
    double sum = sq(L.c2b + o);
    for (size_t j = 0; j < L.kk * L.c1; ++j) sum += sq(L.c2w + o + L.c2 * j);
    for (size_t u = 0; u < L.d; ++u) {
      for (size_t pix = 0; pix < L.px3; ++pix) sum += sq(L.d1w + pix * L.c2 + o + L.flat * u);
    }
    scores[1][o] = std::sqrt(sum);
  }
  scores[2].assign(L.d, 0.0);
  for (size_t u = 0; u < L.d; ++u) {
    double sum = sq(L.d1b + u);
    for (size_t f = 0; f < L.flat; ++f) sum += sq(L.d1w + f + L.flat * u);
    for (size_t cls = 0; cls < L.nc; ++cls) sum += sq(L.d2w + u + L.d * cls);
    scores[2][u] = std::sqrt(sum);
  }
  return scores;
}

MlpShapeChange ChooseKeptCnnUnits(const CnnGeometry& cnn, std::span<const uint32_t> sizes,
                                  std::span<const float> params, std::span<const uint32_t> widths) {
  MlpShapeChange c;
  c.old_sizes.assign(sizes.begin(), sizes.end());
  c.cnn = cnn;
  c.kept = KeepTop(CnnUnitScores(cnn, sizes, params), widths);
  return c;
}

MlpShapeChange NestedSubnetwork(std::span<const uint32_t> sizes, double width, uint32_t offset) {
  MlpShapeChange c;
  c.old_sizes.assign(sizes.begin(), sizes.end());
  for (size_t l = 1; l + 1 < sizes.size(); ++l) {
    const uint32_t n = sizes[l];
    const auto k = std::clamp<uint32_t>(static_cast<uint32_t>(std::ceil(width * n - 1e-9)), 1, n);
    std::vector<uint32_t> kept(k);
    const uint32_t first = offset % n;
    for (uint32_t i = 0; i < k; ++i) kept[i] = (first + i) % n;
    std::ranges::sort(kept);  // a window that wraps past the last unit
    c.kept.push_back(std::move(kept));
  }
  return c;
}

std::vector<uint32_t> WidthsForFlopsFraction(std::span<const uint32_t> original_sizes, double fraction,
                                             const std::optional<CnnGeometry>& cnn) {
  const size_t hidden = original_sizes.size() - 2;
  const uint32_t widest = *std::max_element(original_sizes.begin() + 1, original_sizes.end() - 1);
  const double budget = fraction * ShapeTrainFlops(original_sizes, cnn);
  std::vector<uint32_t> sizes(original_sizes.begin(), original_sizes.end());
  for (uint32_t k = widest; k >= 1; --k) {
    for (size_t l = 0; l < hidden; ++l) {
      sizes[l + 1] = std::max<uint32_t>(1, static_cast<uint32_t>(uint64_t{original_sizes[l + 1]} * k / widest));
    }
    if (ShapeTrainFlops(sizes, cnn) <= budget || k == 1) break;
  }
  return std::vector<uint32_t>(sizes.begin() + 1, sizes.end() - 1);
}

std::optional<std::vector<uint32_t>> PruneStepWidths(const PruneConfig& c, uint32_t round,
                                                     std::span<const uint32_t> original_sizes,
                                                     const std::optional<CnnGeometry>& cnn) {
  if (!c.enabled() || c.every == 0 || c.steps == 0 || round < c.start_round || (round - c.start_round) % c.every != 0) {
    return std::nullopt;
  }
  const uint32_t step = (round - c.start_round) / c.every + 1;
  if (step > c.steps) return std::nullopt;
  const double fraction = 1.0 - (1.0 - c.target_flops_fraction) * step / c.steps;
  return WidthsForFlopsFraction(original_sizes, fraction, cnn);
}

std::vector<uint8_t> EncodeShapeChange(const MlpShapeChange& c) {
  std::vector<uint8_t> out(kMagic, kMagic + 4);
  out.push_back(c.cnn ? kCnnFormat : kFormat);
  out.push_back(static_cast<uint8_t>(c.old_sizes.size()));
  if (c.cnn) {
    PutU32(out, c.cnn->height);
    PutU32(out, c.cnn->width);
    PutU32(out, c.cnn->kernel);
  }
  for (uint32_t s : c.old_sizes) PutU32(out, s);
  for (size_t l = 0; l < c.kept.size(); ++l) {
    const size_t at = out.size();
    out.resize(at + (c.old_sizes[l + 1] + 7) / 8, 0);
    for (uint32_t u : c.kept[l]) out[at + u / 8] |= static_cast<uint8_t>(1u << (u % 8));
  }
  return out;
}

bool IsShapeChange(std::span<const uint8_t> bytes) {
  return bytes.size() >= 4 && std::memcmp(bytes.data(), kMagic, 4) == 0;
}

Result<MlpShapeChange> DecodeShapeChange(std::span<const uint8_t> bytes) {
  if (bytes.size() < 6) {
    return DataLossError("shape change truncated: " + std::to_string(bytes.size()) + " bytes, the header needs 6");
  }
  if (!IsShapeChange(bytes)) return InvalidArgumentError("shape change: bad magic");
  if (bytes[4] != kFormat && bytes[4] != kCnnFormat) {
    return InvalidArgumentError("shape change: unsupported format " + std::to_string(bytes[4]));
  }
  const bool is_cnn = bytes[4] == kCnnFormat;
  const size_t n = bytes[5];
  if (is_cnn && n != kCnnSizes) {
    return InvalidArgumentError("shape change: layer count " + std::to_string(n) + ", a CNN has " +
                                std::to_string(kCnnSizes));
  }
  if (n < 3 || n > kMaxLayers) {
    return InvalidArgumentError("shape change: layer count " + std::to_string(n) + ", expected 3 to " +
                                std::to_string(kMaxLayers));
  }
  MlpShapeChange c;
  size_t head = 6;
  if (is_cnn) {
    if (bytes.size() < head + 12) {
      return DataLossError("shape change truncated in its CNN geometry: " + std::to_string(bytes.size()) + " bytes");
    }
    c.cnn = CnnGeometry{GetU32(&bytes[6]), GetU32(&bytes[10]), GetU32(&bytes[14])};
    FRUGAL_RETURN_IF_ERROR(CheckCnnGeometry(*c.cnn));
    head += 12;
  }
  if (bytes.size() < head + 4 * n) {
    return DataLossError("shape change truncated in its layer sizes: " + std::to_string(bytes.size()) + " bytes");
  }
  for (size_t l = 0; l < n; ++l) {
    const uint32_t s = GetU32(&bytes[head + 4 * l]);
    if (s == 0 || s > kMaxLayerSize) {
      return InvalidArgumentError("shape change: layer size " + std::to_string(l) + " is " + std::to_string(s) +
                                  ", expected 1 to " + std::to_string(kMaxLayerSize));
    }
    c.old_sizes.push_back(s);
  }
  size_t pos = head + 4 * n;
  for (size_t l = 1; l + 1 < n; ++l) {
    const uint32_t units = c.old_sizes[l];
    const size_t mask_bytes = (units + 7) / 8;
    if (bytes.size() - pos < mask_bytes) {
      return DataLossError("shape change truncated in hidden layer " + std::to_string(l - 1) + "'s mask");
    }
    std::vector<uint32_t> kept;
    for (uint32_t u = 0; u < mask_bytes * 8; ++u) {
      if ((bytes[pos + u / 8] >> (u % 8)) & 1u) {
        if (u >= units) {
          return InvalidArgumentError("shape change: hidden layer " + std::to_string(l - 1) +
                                      "'s mask sets unit " + std::to_string(u) + " past its " +
                                      std::to_string(units) + " units");
        }
        kept.push_back(u);
      }
    }
    if (kept.empty()) {
      return InvalidArgumentError("shape change: hidden layer " + std::to_string(l - 1) + "'s mask keeps no unit");
    }
    c.kept.push_back(std::move(kept));
    pos += mask_bytes;
  }
  if (pos != bytes.size()) {
    return InvalidArgumentError("shape change has " + std::to_string(bytes.size() - pos) + " trailing bytes");
  }
  if (c.OldParamCount() > (size_t{1} << 31)) {
    return InvalidArgumentError("shape change: the old model would hold " + std::to_string(c.OldParamCount()) +
                                " parameters, more than 2^31");
  }
  return c;
}

}  // namespace frugal
