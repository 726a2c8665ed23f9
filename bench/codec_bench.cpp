// frugal-codec-bench: sizes, errors and single-core speeds of the uplink and
// downlink codecs, one JSON object per line. Inputs are synthetic: Gaussian
// updates N(0, 0.01^2) or heavy-tailed Student-t(3) * 0.01; models N(0, 0.05^2)
// with per-round deltas N(0, 0.001^2). Speeds are dense-equivalent, 4*dim bytes
// per call: *_mb_s over the median thread CPU time of `reps` calls on one thread,
// *_wall_mb_s over the median wall time (lower when the machine is shared).
//
// `real` mode records real updates instead: per model and density, a few FedAvg
// rounds on Fashion-MNIST (Dirichlet 0.5 over 100 clients), each selected client
// running RunClientTask (the trainer, top-k with its own error-feedback residual,
// ternary values) from the current global model. Every update's index section is
// measured from the bytes the uplink encoder wrote, against log2 C(d,k)/k and
// against the version-1 coder (plain Rice, actually encoded), with the index
// coders' speeds as ratios in this process.
//
// Usage: frugal-codec-bench [reps]   (default 11)
//        frugal-codec-bench real [rounds=4] [clients_per_round=10] [models=logreg,mlp,cnn]

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

#include "measure.h"

#include "frugal/codec/adaptive_rice.h"
#include "frugal/codec/downlink.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"
#include "frugal/data/dataset.h"
#include "frugal/data/partition.h"
#include "frugal/model/model.h"
#include "frugal/round/client_task.h"

namespace frugal {
namespace {

using bench::Measure;
using bench::ThreadCpuSeconds;
using bench::Timing;

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


// ---- real updates -------------------------------------------------------------

struct Quantiles {
  double min = 0, median = 0, max = 0;
};

Quantiles Summarize(std::vector<double> v) {
  Quantiles q;
  if (v.empty()) return q;
  std::sort(v.begin(), v.end());
  q.min = v.front();
  q.max = v.back();
  const size_t n = v.size();
  q.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return q;
}

Json ToJson(const Quantiles& q) { return Json{{"min", q.min}, {"median", q.median}, {"max", q.max}}; }

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) {
    std::fprintf(stderr, "codec bench: %s: %s\n", what, r.error().ToString().c_str());
    std::exit(1);
  }
  return std::move(r).value();
}

// One recorded update: its kept indices and what each coder made of them.
struct RecordedUpdate {
  uint32_t dim = 0;
  std::vector<uint32_t> indices;
  size_t new_index_bytes = 0;  // from the uplink payload the encoder wrote (InspectUplink)
  size_t old_index_bytes = 0;  // plain Rice(ChooseRiceParameter), actually encoded
  bool adaptive = false;
  std::vector<uint8_t> payload;     // the uplink payload the encoder wrote (version 2)
  std::vector<uint8_t> v1_payload;  // the same update as version 1 wrote it (plain Rice)
  size_t examples = 0;  // trained on for this update
  double loss = 0;      // the trainer's mean loss
};

// The payload a version-1 encoder would have sent: same values, plain Rice indices.
std::vector<uint8_t> VersionOnePayload(std::span<const uint8_t> v2, std::span<const uint32_t> indices, uint32_t d,
                                       const UplinkInfo& info) {
  if (info.zstd) Die(InvalidArgumentError("real mode records payloads without the zstd stage"));
  const std::span<const uint8_t> body = v2.subspan(kFrameHeaderSize);
  const size_t value_param_bytes = (info.values == ValueCoding::kTernary || info.values == ValueCoding::kInt8) ? 4 : 0;
  const int b = ChooseRiceParameter(indices, d);
  std::vector<uint8_t> out_body = {body[0], static_cast<uint8_t>(b)};
  out_body.insert(out_body.end(), body.begin() + 2, body.begin() + 2 + static_cast<std::ptrdiff_t>(value_param_bytes));
  const auto rice = Must(EncodeRiceIndices(indices, d, b), "rice");
  out_body.insert(out_body.end(), rice.begin(), rice.end());
  out_body.insert(out_body.end(), body.end() - static_cast<std::ptrdiff_t>(info.value_bytes - value_param_bytes),
                  body.end());
  FrameHeader h;
  h.codec = CodecId::kUplinkSparse;
  h.version = 1;
  h.dim = d;
  h.count = static_cast<uint32_t>(indices.size());
  std::vector<uint8_t> out;
  if (Status st = AppendFrame(h, out_body, &out); !st.ok()) Die(st.error());
  return out;
}

TrainConfig ScenarioTrain(const std::string& model) {
  TrainConfig tc;  // fmnist-dir0.5 (2NN) and fmnist-logreg-c10; the CNN as the 2NN, one epoch
  if (model == "logreg") {
    tc.epochs = 1;
    tc.learning_rate = 0.1f;
  } else {
    tc.epochs = model == "cnn" ? 1 : 2;
    tc.learning_rate = 0.05f;
  }
  tc.batch_size = 32;
  return tc;
}

std::vector<RecordedUpdate> RecordRealUpdates(const Dataset& train, const Partition& part, const std::string& name,
                                              double density, int rounds, uint32_t per_round) {
  auto model = Must(MakeModel(name, train.num_features, train.num_classes), "model");
  auto ws = model->MakeWorkspace();
  std::vector<float> global(model->num_params());
  model->InitParams(global, 1);
  const auto d = static_cast<uint32_t>(global.size());
  UplinkConfig uc;
  uc.density = density;
  uc.values = ValueCoding::kTernary;
  std::vector<std::vector<float>> residual(part.size());
  std::vector<float> scratch, sum(d);
  std::vector<RecordedUpdate> out;
  for (int r = 1; r <= rounds; ++r) {
    Rng pick(DeriveSeed(2024, static_cast<uint64_t>(r)));
    std::vector<uint32_t> ids(part.size());
    for (uint32_t i = 0; i < ids.size(); ++i) ids[i] = i;
    for (uint32_t i = 0; i < per_round; ++i) std::swap(ids[i], ids[i + pick.UniformInt(ids.size() - i)]);
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (uint32_t j = 0; j < per_round; ++j) {
      const uint32_t c = ids[j];
      if (residual[c].empty()) residual[c].assign(d, 0.0f);
      TrainConfig tc = ScenarioTrain(name);
      tc.seed = DeriveSeed(static_cast<uint64_t>(r), c);
      auto task = Must(RunClientTask(*model, global, train, part[c], tc, uc, residual[c], *ws, scratch), "train");
      const UplinkInfo info = Must(InspectUplink(task.update, d), "inspect");
      SparseUpdate u = Must(DecodeUplink(task.update, d), "decode");
      for (size_t e = 0; e < u.indices.size(); ++e) sum[u.indices[e]] += u.values[e];
      RecordedUpdate rec;
      rec.dim = d;
      rec.new_index_bytes = info.index_bytes;
      rec.adaptive = info.adaptive_indices;
      rec.examples = task.train.examples;
      rec.loss = task.train.mean_loss;
      rec.old_index_bytes = Must(EncodeRiceIndices(u.indices, d, ChooseRiceParameter(u.indices, d)), "rice").size();
      rec.v1_payload = VersionOnePayload(task.update, u.indices, d, info);
      rec.indices = std::move(u.indices);
      rec.payload = std::move(task.update);
      out.push_back(std::move(rec));
    }
    for (uint32_t i = 0; i < d; ++i) global[i] += sum[i] / static_cast<float>(per_round);
  }
  return out;
}

// Index-section speed of both coders over the recorded updates, median of `reps` passes.
Json IndexSpeed(const std::vector<RecordedUpdate>& recs, int reps) {
  size_t total = 0;
  for (const auto& r : recs) total += r.indices.size();
  std::vector<IndexSection> sections;
  std::vector<std::vector<uint8_t>> old_sections;
  std::vector<int> old_b;
  for (const auto& r : recs) {
    sections.push_back(Must(EncodeIndexSection(r.indices, r.dim), "encode"));
    old_b.push_back(ChooseRiceParameter(r.indices, r.dim));
    old_sections.push_back(Must(EncodeRiceIndices(r.indices, r.dim, old_b.back()), "rice"));
  }
  const Timing old_enc = Measure(reps, [&] {
    for (const auto& r : recs) Must(EncodeRiceIndices(r.indices, r.dim, ChooseRiceParameter(r.indices, r.dim)), "rice");
  });
  const Timing new_enc = Measure(reps, [&] {
    for (const auto& r : recs) Must(EncodeIndexSection(r.indices, r.dim), "encode");
  });
  const Timing old_dec = Measure(reps, [&] {
    for (size_t i = 0; i < recs.size(); ++i) {
      Must(DecodeRiceIndices(old_sections[i], static_cast<uint32_t>(recs[i].indices.size()), recs[i].dim, old_b[i]),
           "rice decode");
    }
  });
  const Timing new_dec = Measure(reps, [&] {
    for (size_t i = 0; i < recs.size(); ++i) {
      const IndexSection& s = sections[i];
      Must(DecodeIndexSection(s.bytes, static_cast<uint32_t>(recs[i].indices.size()), recs[i].dim, s.rice_parameter,
                              s.adaptive),
           "decode");
    }
  });
  const Timing v1_payload = Measure(reps, [&] {
    for (const auto& r : recs) Must(DecodeUplink(r.v1_payload, r.dim), "decode v1");
  });
  const Timing v2_payload = Measure(reps, [&] {
    for (const auto& r : recs) Must(DecodeUplink(r.payload, r.dim), "decode v2");
  });
  const double m = static_cast<double>(total) / 1e6;
  return Json{{"old_encode_mindex_s", m / old_enc.cpu_s},
              {"new_encode_mindex_s", m / new_enc.cpu_s},
              {"old_decode_mindex_s", m / old_dec.cpu_s},
              {"new_decode_mindex_s", m / new_dec.cpu_s},
              {"encode_speed_new_over_old", old_enc.cpu_s / new_enc.cpu_s},
              {"decode_speed_new_over_old", old_dec.cpu_s / new_dec.cpu_s},
              {"payload_decode_v2_over_v1_speed", v1_payload.cpu_s / v2_payload.cpu_s},
              {"payload_decode_v2_ms", 1e3 * v2_payload.cpu_s / static_cast<double>(recs.size())}};
}

// Full uplink encode (top-k, values, index section) of one recorded-size update, for scale.
void RealMode(int rounds, uint32_t per_round, const std::vector<std::string>& models) {
  const Dataset train = Must(LoadFashionMnist(Split::kTrain), "Fashion-MNIST training set");
  const Partition part =
      Must(PartitionDirichlet(train.labels, train.num_classes, 100, 0.5, DeriveSeed(1, 7)), "partition");
  for (const std::string& name : models) {
    for (double density : {0.01, 0.02, 0.05, 0.1}) {
      const auto t0 = std::chrono::steady_clock::now();
      const std::vector<RecordedUpdate> recs = RecordRealUpdates(train, part, name, density, rounds, per_round);
      std::vector<double> over_new, over_old, bits_new, bits_old, bound, loss;
      size_t examples = 0;
      int past_new = 0, past_old = 0, adaptive = 0;
      size_t bytes_new = 0, bytes_old = 0;
      for (const auto& r : recs) {
        const double k = static_cast<double>(r.indices.size());
        const double b = Log2Binomial(r.dim, k) / k;
        const double n = 8.0 * static_cast<double>(r.new_index_bytes) / k;
        const double o = 8.0 * static_cast<double>(r.old_index_bytes) / k;
        bound.push_back(b);
        loss.push_back(r.loss);
        examples += r.examples;
        bits_new.push_back(n);
        bits_old.push_back(o);
        over_new.push_back(100.0 * (n / b - 1.0));
        over_old.push_back(100.0 * (o / b - 1.0));
        past_new += n > 1.02 * b;
        past_old += o > 1.02 * b;
        adaptive += r.adaptive;
        bytes_new += r.new_index_bytes;
        bytes_old += r.old_index_bytes;
      }
      Json j;
      j["mode"] = "real";
      j["model"] = name;
      j["dim"] = recs.front().dim;
      j["density"] = density;
      j["k"] = recs.front().indices.size();
      j["updates"] = recs.size();
      j["rounds"] = rounds;
      j["clients_per_round"] = per_round;
      j["examples_trained"] = examples;
      j["train_loss"] = ToJson(Summarize(loss));
      j["bound_bits_per_index"] = ToJson(Summarize(bound));
      j["old_bits_per_index"] = ToJson(Summarize(bits_old));
      j["new_bits_per_index"] = ToJson(Summarize(bits_new));
      j["old_pct_over_bound"] = ToJson(Summarize(over_old));
      j["new_pct_over_bound"] = ToJson(Summarize(over_new));
      j["old_updates_past_2pct"] = past_old;
      j["new_updates_past_2pct"] = past_new;
      j["new_adaptive_sections"] = adaptive;
      j["index_bytes_new_over_old"] = static_cast<double>(bytes_new) / static_cast<double>(bytes_old);
      j["index_speed"] = IndexSpeed(recs, 5);
      j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
  }
}

}  // namespace
}  // namespace frugal

int main(int argc, char** argv) {
  using namespace frugal;
  if (argc > 1 && std::string(argv[1]) == "real") {
    const int rounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : 4;
    const uint32_t per_round = argc > 3 ? static_cast<uint32_t>(std::clamp(std::atoi(argv[3]), 1, 100)) : 10;
    std::vector<std::string> models;
    std::string list = argc > 4 ? argv[4] : "logreg,mlp,cnn";
    for (size_t start = 0; start <= list.size();) {
      const size_t comma = std::min(list.find(',', start), list.size());
      if (comma > start) models.push_back(list.substr(start, comma - start));
      start = comma + 1;
    }
    RealMode(rounds, per_round, models);
    return 0;
  }
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
