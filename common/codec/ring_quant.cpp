#include "frugal/codec/ring_quant.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "frugal/core/random.h"

namespace frugal {

namespace {
uint64_t Mask(int bits) { return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }
}  // namespace

Status ValidateRingQuantConfig(const RingQuantConfig& cfg) {
  // Below 8 bits a ring still masks perfectly (the masks are uniform in any
  // Z_2^b); what limits it is the levels left per client (RingMaxLevel >= 1
  // below). One level (ternary values) is sound: RingMaxLevel is the worst
  // case, so max_summands clients at +-1 plus the margin never wrap; how
  // coarse a ring is worth it is a question of accuracy, measured, not of
  // correctness (docs/privacy.md, "Ring").
  if (cfg.bits < 4 || cfg.bits > 62) {
    return InvalidArgumentError("ring quantization: bits " + std::to_string(cfg.bits) + " outside 4..62");
  }
  if (!(std::isfinite(cfg.clip) && cfg.clip > 0)) {
    return InvalidArgumentError("ring quantization: clip must be finite and > 0");
  }
  if (cfg.max_summands == 0) return InvalidArgumentError("ring quantization: max_summands must be >= 1");
  if (!(cfg.l2_clip >= 0) || !std::isfinite(cfg.l2_clip) || !(cfg.noise_mu >= 0) || !std::isfinite(cfg.noise_mu) ||
      cfg.noise_margin < 0) {
    return InvalidArgumentError("ring quantization: l2_clip, noise_mu and noise_margin must be finite and >= 0");
  }
  if (cfg.noise_mu > privacy::kMaxPoissonMean) {
    return InvalidArgumentError("ring quantization: noise_mu " + std::to_string(cfg.noise_mu) +
                                " is above the largest Skellam mean the noise sampler draws (2^52)");
  }
  if (cfg.modular && (cfg.noise_mu > 0 || cfg.noise_margin > 0)) {
    return InvalidArgumentError("ring quantization: modular clipping (secure.modular_clip) with distributed DP noise: "
                                "the noise plan sizes the ring for max_summands clients and never wraps");
  }
  if (RingMaxLevel(cfg) < 1) {
    return InvalidArgumentError("ring quantization: " + std::to_string(cfg.bits) + " bits leave no levels for " +
                                std::to_string(cfg.max_summands) + " summands");
  }
  return OkStatus();
}

int64_t RingMaxLevel(const RingQuantConfig& cfg) {
  if (cfg.max_summands == 0 || cfg.bits < 2 || cfg.bits > 63 || cfg.noise_margin < 0) return 0;
  const uint64_t top = (uint64_t{1} << (cfg.bits - 1)) - 1;
  if (static_cast<uint64_t>(cfg.noise_margin) >= top) return 0;
  return static_cast<int64_t>((top - static_cast<uint64_t>(cfg.noise_margin)) / cfg.max_summands);
}

double RingScale(const RingQuantConfig& cfg) { return static_cast<double>(RingMaxLevel(cfg)) / cfg.clip; }

Result<std::vector<uint64_t>> RingQuantize(std::span<const float> update, std::span<const uint32_t> support,
                                           const RingQuantConfig& cfg, uint64_t rounding_seed,
                                           std::span<float> residual, const privacy::NoiseKey* noise_key) {
  FRUGAL_RETURN_IF_ERROR(ValidateRingQuantConfig(cfg));
  if (cfg.noise_mu > 0 && noise_key == nullptr) {
    return InvalidArgumentError("ring quantization: distributed DP noise needs the client's noise key");
  }
  const size_t d = update.size();
  if (!residual.empty() && residual.size() != d) {
    return InvalidArgumentError("ring quantization: residual has " + std::to_string(residual.size()) +
                                " entries, update " + std::to_string(d));
  }
  for (size_t i = 0; i < d; ++i) {
    const float r = residual.empty() ? 0.0f : residual[i];
    if (!std::isfinite(update[i]) || !std::isfinite(r)) {
      return InvalidArgumentError("ring quantization: non-finite value at coordinate " + std::to_string(i));
    }
  }
  for (size_t j = 0; j < support.size(); ++j) {
    if (support[j] >= d || (j > 0 && support[j] <= support[j - 1])) {
      return InvalidArgumentError("ring quantization: support entry " + std::to_string(j) +
                                  " is out of range or not ascending");
    }
  }
  const double scale = RingScale(cfg);
  const auto max_level = static_cast<double>(RingMaxLevel(cfg));
  const uint64_t mask = Mask(cfg.bits);
  Rng rng(rounding_seed);
  std::vector<uint64_t> out(support.size());
  if (!residual.empty()) {
    for (size_t i = 0; i < d; ++i) residual[i] += update[i];
  }
  auto acc_at = [&](uint32_t i) {
    return residual.empty() ? static_cast<double>(update[i]) : static_cast<double>(residual[i]);
  };
  // Distributed DP: the support values' L2 norm is the sensitivity.
  double l2_scale = 1;
  if (cfg.l2_clip > 0) {
    double sq = 0;
    for (uint32_t i : support) sq += acc_at(i) * acc_at(i);
    if (std::sqrt(sq) > cfg.l2_clip) l2_scale = cfg.l2_clip / std::sqrt(sq);
  }
  std::optional<privacy::NoiseStream> noise;
  if (cfg.noise_mu > 0) {
    FRUGAL_ASSIGN_OR_RETURN(privacy::NoiseStream s, privacy::NoiseStream::Create(*noise_key));
    noise.emplace(std::move(s));
  }
  for (size_t j = 0; j < support.size(); ++j) {
    const uint32_t i = support[j];
    const double acc = acc_at(i) * l2_scale;
    const double x = std::clamp(acc * scale, -max_level, max_level);
    // floor(x + u), u uniform in [0, 1): unbiased, and stays within ±max_level.
    const double level = std::clamp(std::floor(x + rng.Uniform()), -max_level, max_level);
    const auto q = static_cast<int64_t>(level);
    // The noise goes on the wire only: error feedback keeps what the value lost.
    out[j] = static_cast<uint64_t>(noise ? q + noise->Skellam(cfg.noise_mu) : q) & mask;
    if (!residual.empty()) residual[i] = static_cast<float>(acc_at(i) - static_cast<double>(q) / scale);
  }
  return out;
}

Result<std::vector<double>> RingDecodeSum(std::span<const uint64_t> ring_sum, uint32_t summands,
                                          const RingQuantConfig& cfg) {
  FRUGAL_RETURN_IF_ERROR(ValidateRingQuantConfig(cfg));
  if (summands > cfg.max_summands && !cfg.modular) {
    return FailedPreconditionError("ring sum of " + std::to_string(summands) + " clients, but the ring has headroom for " +
                                   std::to_string(cfg.max_summands));
  }
  const uint64_t mask = Mask(cfg.bits);
  const uint64_t half = uint64_t{1} << (cfg.bits - 1);
  // Modular clipping past the ring's headroom: every residue is a possible
  // (wrapped) sum, so the bound becomes the centered range itself.
  const int64_t bound = std::min(RingMaxLevel(cfg) * static_cast<int64_t>(summands) + cfg.noise_margin,
                                 static_cast<int64_t>(half));
  const double scale = RingScale(cfg);
  std::vector<double> out(ring_sum.size());
  for (size_t j = 0; j < ring_sum.size(); ++j) {
    const uint64_t v = ring_sum[j] & mask;
    const int64_t s = v >= half ? static_cast<int64_t>(v) - static_cast<int64_t>(mask) - 1 : static_cast<int64_t>(v);
    if (s > bound || s < -bound || ring_sum[j] > mask) {
      return DataLossError("ring sum entry " + std::to_string(j) + " is " + std::to_string(s) + ", outside the ±" +
                           std::to_string(bound) + " that " + std::to_string(summands) + " clients can send");
    }
    out[j] = static_cast<double>(s) / scale;
  }
  return out;
}

Result<RingWrapCounter> RingWrapCounter::Create(int bits, size_t entries) {
  if (bits < 2 || bits > 62) return InvalidArgumentError("ring wrap count: bits " + std::to_string(bits) + " outside 2..62");
  return RingWrapCounter(bits, entries);
}

Status RingWrapCounter::Add(std::span<const uint64_t> input) {
  if (input.size() != sum_.size()) {
    return InvalidArgumentError("ring wrap count: input has " + std::to_string(input.size()) + " entries, expected " +
                                std::to_string(sum_.size()));
  }
  const uint64_t mask = Mask(bits_);
  for (size_t j = 0; j < input.size(); ++j) {
    if (input[j] > mask) {
      return InvalidArgumentError("ring wrap count: entry " + std::to_string(j) + " is outside Z_2^" +
                                  std::to_string(bits_));
    }
  }
  const int64_t half = int64_t{1} << (bits_ - 1);
  for (size_t j = 0; j < input.size(); ++j) {
    const auto v = static_cast<int64_t>(input[j]);
    sum_[j] += v >= half ? v - 2 * half : v;
  }
  return OkStatus();
}

RingWrapCount RingWrapCounter::Count() const { return *Count(std::vector<uint8_t>(sum_.size(), 1)); }

Result<RingWrapCount> RingWrapCounter::Count(std::span<const uint8_t> only) const {
  if (only.size() != sum_.size()) {
    return InvalidArgumentError("ring wrap count: " + std::to_string(only.size()) + " flags for " +
                                std::to_string(sum_.size()) + " entries");
  }
  const int64_t half = int64_t{1} << (bits_ - 1);
  RingWrapCount out;
  for (size_t j = 0; j < sum_.size(); ++j) {
    if (only[j] == 0) continue;
    const int64_t s = sum_[j];
    ++out.entries;
    if (s < -half || s > half - 1) ++out.wrapped;
    if (s < -half / 2 || s > half / 2 - 1) ++out.wrapped_one_bit_less;
  }
  return out;
}

std::vector<uint8_t> PackRing(std::span<const uint64_t> values, int bits) {
  const size_t total_bits = values.size() * static_cast<size_t>(bits);
  std::vector<uint8_t> out((total_bits + 7) / 8, 0);
  const uint64_t mask = Mask(bits);
  size_t pos = 0;
  for (uint64_t v : values) {
    v &= mask;
    int left = bits;
    while (left > 0) {
      const size_t byte = pos / 8;
      const int off = static_cast<int>(pos % 8);
      const int take = std::min(8 - off, left);
      out[byte] |= static_cast<uint8_t>((v & ((uint64_t{1} << take) - 1)) << off);
      v >>= take;
      left -= take;
      pos += static_cast<size_t>(take);
    }
  }
  return out;
}

Result<std::vector<uint64_t>> UnpackRing(std::span<const uint8_t> bytes, size_t count, int bits) {
  if (bits < 1 || bits > 64) return InvalidArgumentError("ring vector: bits " + std::to_string(bits) + " outside 1..64");
  if (count > (size_t{1} << 32)) return InvalidArgumentError("ring vector: too many entries");
  const size_t total_bits = count * static_cast<size_t>(bits);
  if (bytes.size() != (total_bits + 7) / 8) {
    return InvalidArgumentError("ring vector: " + std::to_string(bytes.size()) + " bytes for " + std::to_string(count) +
                                " entries of " + std::to_string(bits) + " bits, expected " +
                                std::to_string((total_bits + 7) / 8));
  }
  if (total_bits % 8 != 0 && (bytes.back() >> (total_bits % 8)) != 0) {
    return InvalidArgumentError("ring vector: nonzero padding bits");
  }
  std::vector<uint64_t> out(count);
  size_t pos = 0;
  for (size_t j = 0; j < count; ++j) {
    uint64_t v = 0;
    int got = 0;
    while (got < bits) {
      const size_t byte = pos / 8;
      const int off = static_cast<int>(pos % 8);
      const int take = std::min(8 - off, bits - got);
      v |= static_cast<uint64_t>((bytes[byte] >> off) & ((1u << take) - 1)) << got;
      got += take;
      pos += static_cast<size_t>(take);
    }
    out[j] = v;
  }
  return out;
}

}  // namespace frugal
