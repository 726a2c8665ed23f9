// frugal-codec-bench: sizes, errors and single-core speeds of the uplink and
// downlink codecs, one JSON object per line. Inputs are synthetic: Gaussian
// updates N(0, 0.01^2) or heavy-tailed Student-t(3) * 0.01; models N(0, 0.05^2)
// with per-round deltas N(0, 0.001^2). Speeds are dense-equivalent, 4*dim bytes
// per call: *_mb_s over the median thread CPU time of `reps` calls on one thread,
// *_wall_mb_s over the median wall time (lower when the machine is shared).
//
// Usage: frugal-codec-bench [reps]   (default 11)

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "frugal/codec/downlink.h"
#include "frugal/codec/golomb.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"

namespace frugal {
namespace {

using Json = nlohmann::ordered_json;

std::vector<float> GaussianVector(size_t n, uint64_t seed, double sigma) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(sigma * rng.Normal());
  return v;
}

std::vector<float> StudentT3Vector(size_t n, uint64_t seed, double scale) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) {
    const double chi2 = 2.0 * rng.Gamma(1.5);  // chi-square with 3 degrees of freedom
    x = static_cast<float>(scale * rng.Normal() / std::sqrt(chi2 / 3.0));
  }
  return v;
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double cpu_s;   // median CPU time of this thread per call
  double wall_s;  // median wall time per call
};

// The machine may be shared: thread CPU time is what one core spent, wall time is what
// a caller waited. Both are medians over `reps` calls.
Timing Measure(int reps, const std::function<void()>& fn) {
  std::vector<double> cpu, wall;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = ThreadCpuSeconds();
    fn();
    cpu.push_back(ThreadCpuSeconds() - cpu_start);
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const auto mid = static_cast<std::ptrdiff_t>(reps / 2);
  std::nth_element(cpu.begin(), cpu.begin() + mid, cpu.end());
  std::nth_element(wall.begin(), wall.begin() + mid, wall.end());
  return {cpu[static_cast<size_t>(mid)], wall[static_cast<size_t>(mid)]};
}

double RelL2(std::span<const float> approx, std::span<const float> exact) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < exact.size(); ++i) {
    const double e = static_cast<double>(approx[i]) - exact[i];
    num += e * e;
    den += static_cast<double>(exact[i]) * exact[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : 0.0;
}

const char* CodingName(ValueCoding c) {
  switch (c) {
    case ValueCoding::kTernary: return "ternary";
    case ValueCoding::kInt8: return "int8";
    case ValueCoding::kFp16: return "fp16";
    case ValueCoding::kFp32: return "fp32";
  }
  return "?";
}

[[noreturn]] void Die(const Error& e) {
  std::fprintf(stderr, "codec bench: %s\n", e.ToString().c_str());
  std::exit(1);
}

void BenchUplink(const std::vector<float>& update, const char* input, const UplinkConfig& cfg, int reps) {
  const auto d = static_cast<uint32_t>(update.size());
  // Size and error of one round from a zero residual.
  std::vector<float> residual(d, 0.0f);
  auto payload = EncodeUplink(update, cfg, residual);
  if (!payload.ok()) Die(payload.error());
  auto info = InspectUplink(*payload, d);
  if (!info.ok()) Die(info.error());
  auto decoded = DecodeUplink(*payload, d);
  if (!decoded.ok()) Die(decoded.error());
  std::vector<float> dense(d, 0.0f);
  for (size_t j = 0; j < decoded->indices.size(); ++j) dense[decoded->indices[j]] = decoded->values[j];

  // Speed with error feedback running, as a client would over successive rounds.
  std::vector<float> fb(d, 0.0f);
  const Timing enc_t = Measure(reps, [&] {
    auto p = EncodeUplink(update, cfg, fb);
    if (!p.ok()) Die(p.error());
  });
  const Timing dec_t = Measure(reps, [&] {
    auto s = DecodeUplink(*payload, d);
    if (!s.ok()) Die(s.error());
  });
  const double dense_mb = 4.0 * d / 1e6;
  Json j;
  j["codec"] = cfg.dense ? std::string("uplink-dense-fp32")
                         : std::string("uplink-topk-") + CodingName(cfg.values) + "-golomb" +
                               (info->zstd ? "-zstd" : "");
  j["input"] = input;
  j["dim"] = d;
  j["density"] = cfg.dense ? 1.0 : cfg.density;
  j["selection"] = cfg.dense ? "none" : (cfg.exact_topk ? "exact" : "sampled");
  j["try_zstd"] = cfg.try_zstd;
  j["count"] = info->count;
  j["bytes"] = payload->size();
  j["ratio_vs_fp32"] = 4.0 * d / static_cast<double>(payload->size());
  if (!cfg.dense && info->count > 0) {
    j["rice_b"] = info->rice_parameter;
    j["bits_per_index"] = 8.0 * static_cast<double>(info->index_bytes) / info->count;
    j["bound_bits_per_index"] = Log2Binomial(d, info->count) / info->count;
    j["bits_per_entry_total"] = 8.0 * static_cast<double>(payload->size()) / info->count;
  }
  j["rel_l2_error"] = RelL2(dense, update);
  j["encode_mb_s"] = dense_mb / enc_t.cpu_s;
  j["decode_mb_s"] = dense_mb / dec_t.cpu_s;
  j["encode_wall_mb_s"] = dense_mb / enc_t.wall_s;
  j["decode_wall_mb_s"] = dense_mb / dec_t.wall_s;
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

void BenchDownlink(const std::vector<float>& target, const std::vector<float>& base, const DownlinkConfig& cfg,
                   int reps) {
  const auto d = static_cast<uint32_t>(target.size());
  auto enc = EncodeDownlink(target, base, cfg);
  if (!enc.ok()) Die(enc.error());
  auto dec = DecodeDownlink(enc->bytes, base, d);
  if (!dec.ok()) Die(dec.error());
  const bool exact = std::equal(dec->begin(), dec->end(), enc->reconstruction.begin(),
                                [](float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); });
  const Timing enc_t = Measure(reps, [&] {
    auto e = EncodeDownlink(target, base, cfg);
    if (!e.ok()) Die(e.error());
  });
  const Timing dec_t = Measure(reps, [&] {
    auto v = DecodeDownlink(enc->bytes, base, d);
    if (!v.ok()) Die(v.error());
  });
  const double dense_mb = 4.0 * d / 1e6;
  Json j;
  j["codec"] = cfg.bits == 0 ? "downlink-fp32" : (base.empty() ? "downlink-quantized" : "downlink-quantized-delta");
  j["input"] = base.empty() ? "model N(0,0.05^2)" : "model N(0,0.05^2) + delta N(0,0.001^2)";
  j["dim"] = d;
  j["bits"] = cfg.bits;
  j["block_size"] = cfg.bits == 0 ? 0 : cfg.block_size;
  j["rounding"] = cfg.bits == 0 ? "none" : (cfg.stochastic ? "stochastic" : "nearest");
  j["bytes"] = enc->bytes.size();
  j["ratio_vs_fp32"] = 4.0 * d / static_cast<double>(enc->bytes.size());
  j["rel_l2_error"] = RelL2(*dec, target);
  if (!base.empty()) {
    std::vector<float> true_delta(d), got_delta(d);
    for (size_t i = 0; i < d; ++i) {
      true_delta[i] = target[i] - base[i];
      got_delta[i] = (*dec)[i] - base[i];
    }
    j["rel_l2_error_of_delta"] = RelL2(got_delta, true_delta);
  }
  j["decode_matches_sender"] = exact;
  j["encode_mb_s"] = dense_mb / enc_t.cpu_s;
  j["decode_mb_s"] = dense_mb / dec_t.cpu_s;
  j["encode_wall_mb_s"] = dense_mb / enc_t.wall_s;
  j["decode_wall_mb_s"] = dense_mb / dec_t.wall_s;
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

}  // namespace
}  // namespace frugal

int main(int argc, char** argv) {
  using namespace frugal;
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 11;
  for (uint32_t d : {199210u, 1663370u}) {
    const std::vector<float> gauss = GaussianVector(d, 1, 0.01);
    const std::vector<float> heavy = StudentT3Vector(d, 2, 0.01);
    UplinkConfig dense;
    dense.dense = true;
    BenchUplink(gauss, "gaussian", dense, reps);
    for (double p : {0.001, 0.0025, 0.01, 0.1}) {
      for (bool exact : {true, false}) {
        UplinkConfig cfg;
        cfg.density = p;
        cfg.exact_topk = exact;
        BenchUplink(gauss, "gaussian", cfg, reps);
      }
    }
    for (ValueCoding c : {ValueCoding::kTernary, ValueCoding::kInt8, ValueCoding::kFp16, ValueCoding::kFp32}) {
      for (bool zstd : {false, true}) {
        UplinkConfig cfg;
        cfg.values = c;
        cfg.exact_topk = false;
        cfg.try_zstd = zstd;
        BenchUplink(heavy, "student-t3", cfg, reps);
      }
    }
    const std::vector<float> model = GaussianVector(d, 3, 0.05);
    std::vector<float> next = GaussianVector(d, 4, 0.001);
    for (size_t i = 0; i < d; ++i) next[i] += model[i];
    DownlinkConfig fp32;
    fp32.bits = 0;
    BenchDownlink(model, {}, fp32, reps);
    for (int bits : {8, 4, 2}) {
      for (bool stochastic : {false, true}) {
        DownlinkConfig cfg;
        cfg.bits = bits;
        cfg.stochastic = stochastic;
        cfg.seed = 7;
        BenchDownlink(model, {}, cfg, reps);
        BenchDownlink(next, model, cfg, reps);
      }
    }
  }
  return 0;
}
