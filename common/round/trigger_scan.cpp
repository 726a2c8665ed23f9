#include "frugal/round/trigger_scan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <numeric>
#include <string>

#include "frugal/core/random.h"
#include "frugal/core/streams.h"

namespace frugal {
namespace {

// The scan steps on the input gradient, which only Mlp exposes.
Result<const Mlp*> AsMlp(const Model& model) {
  const auto* mlp = dynamic_cast<const Mlp*>(&model);
  if (mlp == nullptr) {
    return InvalidArgumentError("server.trigger_scan_every needs an mlp model, the run's is " +
                                std::string(model.name()));
  }
  return mlp;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

float Sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

void Stamp(const RecoveredTrigger& t, const float* x, float* out, size_t dim) {
  for (size_t j = 0; j < dim; ++j) out[j] = (1.0f - t.mask[j]) * x[j] + t.mask[j] * t.pattern[j];
}

// Adam on one vector of logits (Kingma & Ba's defaults, beta1 0.9, beta2 0.999).
struct Adam {
  std::vector<float> m, v;
  uint32_t t = 0;
  explicit Adam(size_t d) : m(d, 0.0f), v(d, 0.0f) {}
  void Step(std::span<float> w, std::span<const float> g, float lr) {
    ++t;
    const float c1 = 1.0f - std::pow(0.9f, static_cast<float>(t)), c2 = 1.0f - std::pow(0.999f, static_cast<float>(t));
    for (size_t j = 0; j < w.size(); ++j) {
      m[j] = 0.9f * m[j] + 0.1f * g[j];
      v[j] = 0.999f * v[j] + 0.001f * g[j] * g[j];
      w[j] -= lr * (m[j] / c1) / (std::sqrt(v[j] / c2) + 1e-8f);
    }
  }
};

// Neural Cleanse's search for one class: the smallest mask (L1) whose stamp
// sends at least cfg.success of the images to `target`. The L1 weight grows
// while the stamp succeeds and shrinks while it fails (patience 5 steps,
// factors 1.5 and 1.5^1.5, as the paper's code).
RecoveredTrigger ReverseOne(const Mlp& model, std::span<const float> params, const std::vector<float>& rows,
                            std::span<const uint32_t> eligible, int32_t target, const TriggerScanConfig& cfg,
                            Rng& rng, ModelWorkspace& ws) {
  const size_t dim = model.input_dim();
  std::vector<float> a(dim), b(dim);
  for (size_t j = 0; j < dim; ++j) {
    a[j] = 0.1f * static_cast<float>(rng.Normal());
    b[j] = 0.1f * static_cast<float>(rng.Normal());
  }
  Adam adam_a(dim), adam_b(dim);
  const bool whole = cfg.batch_size == 0 || cfg.batch_size >= eligible.size();
  const size_t n = whole ? eligible.size() : cfg.batch_size;
  std::vector<float> clean(n * dim), x(n * dim), dx(n * dim), ga(dim), gb(dim), mask(dim), pattern(dim);
  std::vector<int32_t> labels(n, target), predicted(n);
  float lambda = cfg.lambda;
  int above = 0, below = 0;
  RecoveredTrigger best;
  double best_l1 = -1;
  for (uint32_t step = 0; step < cfg.steps; ++step) {
    for (size_t j = 0; j < dim; ++j) {
      mask[j] = Sigmoid(a[j]);
      pattern[j] = Sigmoid(b[j]);
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t pick = whole ? i : static_cast<size_t>(rng.UniformInt(eligible.size()));
      const float* src = rows.data() + static_cast<size_t>(eligible[pick]) * dim;
      std::copy(src, src + dim, clean.data() + i * dim);
      float* dst = x.data() + i * dim;
      for (size_t j = 0; j < dim; ++j) dst[j] = (1.0f - mask[j]) * src[j] + mask[j] * pattern[j];
    }
    model.InputGradient(params, BatchView{x.data(), labels.data(), n}, dx, predicted, ws);
    size_t hits = 0;
    for (size_t i = 0; i < n; ++i) hits += predicted[i] == target ? 1 : 0;
    const bool success = static_cast<float>(hits) >= cfg.success * static_cast<float>(n);
    const double l1 = std::accumulate(mask.begin(), mask.end(), 0.0);
    if (success && (best_l1 < 0 || l1 < best_l1)) {
      best_l1 = l1;
      best.target = target;
      best.mask = mask;
      best.pattern = pattern;
    }
    above = success ? above + 1 : 0;
    below = success ? 0 : below + 1;
    if (above >= 5) {
      lambda *= 1.5f;
      above = 0;
    } else if (below >= 5) {
      lambda /= std::pow(1.5f, 1.5f);
      below = 0;
    }
    std::fill(ga.begin(), ga.end(), 0.0f);
    std::fill(gb.begin(), gb.end(), 0.0f);
    for (size_t i = 0; i < n; ++i) {
      const float* s = clean.data() + i * dim;
      const float* d = dx.data() + i * dim;
      for (size_t j = 0; j < dim; ++j) {
        ga[j] += d[j] * (pattern[j] - s[j]);  // x' = (1 - m) x + m p
        gb[j] += d[j] * mask[j];
      }
    }
    for (size_t j = 0; j < dim; ++j) {
      ga[j] = (ga[j] + lambda) * mask[j] * (1.0f - mask[j]);
      gb[j] *= pattern[j] * (1.0f - pattern[j]);
    }
    adam_a.Step(a, ga, cfg.learning_rate);
    adam_b.Step(b, gb, cfg.learning_rate);
  }
  return best;
}

}  // namespace

double MaskCover(std::span<const float> mask, std::span<const float> images, float floor) {
  const size_t dim = mask.size();
  if (dim == 0 || images.size() < dim) return 0.0;
  const size_t n = images.size() / dim;
  const bool any = std::any_of(mask.begin(), mask.end(), [floor](float m) { return m >= floor; });
  double weighted = 0.0, total = 0.0;
  for (size_t j = 0; j < dim; ++j) {
    if (any && mask[j] < floor) continue;
    double mean = 0.0;
    for (size_t i = 0; i < n; ++i) mean += images[i * dim + j];
    weighted += static_cast<double>(mask[j]) * mean / static_cast<double>(n);
    total += mask[j];
  }
  return total > 0.0 ? weighted / total : 0.0;
}

std::vector<double> LowAnomalyIndex(std::span<const double> values) {
  std::vector<double> out(values.size(), 0.0);
  if (values.empty()) return out;
  const double med = Median({values.begin(), values.end()});
  std::vector<double> dev;
  dev.reserve(values.size());
  for (double v : values) dev.push_back(std::fabs(v - med));
  const double mad = 1.4826 * Median(std::move(dev));
  if (!(mad > 0)) return out;
  for (size_t c = 0; c < values.size(); ++c) out[c] = values[c] < med ? (med - values[c]) / mad : 0.0;
  return out;
}

int32_t FlagOutlier(std::span<const double> anomaly, std::span<const double> cover, const TriggerScanConfig& cfg,
                    std::vector<int32_t>& refused) {
  refused.clear();
  std::vector<size_t> over;  // classes with a mask over the threshold, most anomalous first
  for (size_t c = 0; c < anomaly.size() && c < cover.size(); ++c) {
    if (anomaly[c] > cfg.anomaly && cover[c] >= 0) over.push_back(c);
  }
  std::stable_sort(over.begin(), over.end(), [anomaly](size_t a, size_t b) { return anomaly[a] > anomaly[b]; });
  int32_t flagged = -1;
  for (size_t c : over) {
    // Compared in float, the key's own type, so a cover read back from a note meets its own bar.
    if (static_cast<float>(cover[c]) > cfg.max_cover) {
      refused.push_back(static_cast<int32_t>(c));
    } else if (flagged < 0) {
      flagged = static_cast<int32_t>(c);
    }
  }
  return flagged;
}

Result<TriggerScanReport> ScanForTrigger(const Model& model, std::span<const float> params, const Dataset& data,
                                         std::span<const uint32_t> trusted, const TriggerScanConfig& cfg,
                                         uint64_t seed) {
  FRUGAL_ASSIGN_OR_RETURN(const Mlp* mlp, AsMlp(model));
  const size_t dim = model.input_dim(), classes = model.num_classes();
  if (params.size() != model.num_params()) {
    return InvalidArgumentError("trigger scan: the parameters do not match the model");
  }
  if (data.num_features != dim) {
    return InvalidArgumentError("trigger scan: the trusted set has " + std::to_string(data.num_features) +
                                " features, the model takes " + std::to_string(dim));
  }
  if (trusted.empty()) return InvalidArgumentError("trigger scan: the trusted set is empty");
  std::vector<float> rows(trusted.size() * dim);
  for (size_t i = 0; i < trusted.size(); ++i) data.CopyRow(trusted[i], rows.data() + i * dim);
  TriggerScanReport report;
  report.mask_l1.assign(classes, static_cast<double>(dim));
  std::vector<RecoveredTrigger> found(classes);
  Rng rng(seed);
  const std::unique_ptr<ModelWorkspace> ws = model.MakeWorkspace();
  std::vector<float> x;
  std::vector<int32_t> labels, predicted;
  for (size_t c = 0; c < classes; ++c) {
    const auto target = static_cast<int32_t>(c);
    std::vector<uint32_t> eligible;  // positions in rows of trusted images of other classes
    for (size_t i = 0; i < trusted.size(); ++i) {
      if (data.labels[trusted[i]] != target) eligible.push_back(static_cast<uint32_t>(i));
    }
    if (eligible.empty()) continue;
    RecoveredTrigger t = ReverseOne(*mlp, params, rows, eligible, target, cfg, rng, *ws);
    if (t.target < 0) continue;
    // The batch said it works; every eligible trusted image must confirm it.
    x.resize(eligible.size() * dim);
    labels.assign(eligible.size(), target);
    predicted.resize(eligible.size());
    for (size_t i = 0; i < eligible.size(); ++i) {
      Stamp(t, rows.data() + static_cast<size_t>(eligible[i]) * dim, x.data() + i * dim, dim);
    }
    mlp->Predict(params, BatchView{x.data(), labels.data(), eligible.size()}, predicted, *ws);
    const auto hits = static_cast<size_t>(std::count(predicted.begin(), predicted.end(), target));
    if (static_cast<float>(hits) < cfg.success * static_cast<float>(eligible.size())) continue;
    report.mask_l1[c] = std::accumulate(t.mask.begin(), t.mask.end(), 0.0);
    found[c] = std::move(t);
  }
  report.anomaly = LowAnomalyIndex(report.mask_l1);
  report.cover.assign(classes, -1.0);
  for (size_t c = 0; c < classes; ++c) {
    if (found[c].target >= 0) report.cover[c] = MaskCover(found[c].mask, rows, cfg.prune_mask);
  }
  report.flagged = FlagOutlier(report.anomaly, report.cover, cfg, report.refused);
  if (report.flagged >= 0) {
    report.trigger = found[static_cast<size_t>(report.flagged)];
    report.trigger.flagged = true;
  }
  report.by_class = std::move(found);
  return report;
}

Result<std::vector<float>> UnlearnTriggers(const Model& model, std::span<const float> params, const Dataset& data,
                                           std::span<const uint32_t> trusted,
                                           std::span<const RecoveredTrigger> triggers, TrainConfig train,
                                           const TriggerScanConfig& cfg, ModelWorkspace& ws) {
  std::vector<float> correction(params.size(), 0.0f);
  if (triggers.empty() || trusted.empty() || cfg.unlearn_epochs == 0) return correction;
  const size_t dim = model.input_dim();
  if (data.num_features != dim) {
    return InvalidArgumentError("trigger unlearning: the trusted set has " + std::to_string(data.num_features) +
                                " features, the model takes " + std::to_string(dim));
  }
  // The trusted images clean, then stamped with each trigger, all under their true labels.
  Dataset mixed;
  mixed.num_features = dim;
  mixed.num_classes = data.num_classes;
  const size_t copies = 1 + triggers.size();
  mixed.features.resize(copies * trusted.size() * dim);
  mixed.labels.resize(copies * trusted.size());
  std::vector<float> row(dim);
  for (size_t i = 0; i < trusted.size(); ++i) {
    data.CopyRow(trusted[i], row.data());
    for (size_t k = 0; k < copies; ++k) {
      float* out = mixed.features.data() + (k * trusted.size() + i) * dim;
      if (k == 0) {
        std::copy(row.begin(), row.end(), out);
      } else {
        const RecoveredTrigger& t = triggers[k - 1];
        if (t.mask.size() != dim || t.pattern.size() != dim) {
          return InvalidArgumentError("trigger unlearning: a trigger's mask or pattern is not input-sized");
        }
        Stamp(t, row.data(), out, dim);
      }
      mixed.labels[k * trusted.size() + i] = data.labels[trusted[i]];
    }
  }
  std::vector<uint32_t> all(mixed.size());
  std::iota(all.begin(), all.end(), 0u);
  std::vector<float> w(params.begin(), params.end());
  train.epochs = static_cast<int>(cfg.unlearn_epochs);
  FRUGAL_RETURN_IF_ERROR(Train(model, w, mixed, all, train, ws).status());
  for (size_t j = 0; j < w.size(); ++j) correction[j] = w[j] - params[j];
  return correction;
}

namespace {

constexpr uint32_t kTriggerStateMagic = 0x31475254;  // "TRG1", little-endian

template <typename T>
void Put(std::vector<uint8_t>& out, T v) {
  const auto* b = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), b, b + sizeof(T));
}

// Reads little-endian values off the front of a byte span; false once short.
struct StateReader {
  std::span<const uint8_t> rest;
  template <typename T>
  bool Get(T& v) {
    if (rest.size() < sizeof(T)) return false;
    std::memcpy(&v, rest.data(), sizeof(T));
    rest = rest.subspan(sizeof(T));
    return true;
  }
  bool Floats(std::vector<float>& v, size_t n) {
    if (rest.size() / sizeof(float) < n) return false;
    v.resize(n);
    std::memcpy(v.data(), rest.data(), n * sizeof(float));
    rest = rest.subspan(n * sizeof(float));
    return true;
  }
};

}  // namespace

std::vector<uint8_t> TriggerDefense::State() const {
  std::vector<uint8_t> out;
  Put(out, kTriggerStateMagic);
  const size_t dim = triggers_.empty() ? 0 : triggers_.front().mask.size();
  Put(out, static_cast<uint32_t>(dim));
  Put(out, static_cast<uint32_t>(triggers_.size()));
  for (const RecoveredTrigger& t : triggers_) {
    Put(out, t.target);
    Put(out, static_cast<uint8_t>(t.flagged ? 1 : 0));
    for (const std::vector<float>* v : {&t.mask, &t.pattern}) {
      const auto* b = reinterpret_cast<const uint8_t*>(v->data());
      out.insert(out.end(), b, b + v->size() * sizeof(float));
    }
  }
  Put(out, static_cast<uint32_t>(flags_.size()));
  for (uint32_t f : flags_) Put(out, f);
  Put(out, static_cast<uint32_t>(pruned_.size()));
  for (uint32_t p : pruned_) Put(out, p);
  return out;
}

Status TriggerDefense::SetState(std::span<const uint8_t> bytes, size_t input_dim, size_t classes) {
  if (bytes.empty()) {
    triggers_.clear();
    flags_.clear();
    pruned_.clear();
    return OkStatus();
  }
  auto bad = [](const std::string& what) { return DataLossError("trigger scan state: " + what); };
  StateReader r{bytes};
  uint32_t magic = 0, dim = 0, count = 0;
  if (!r.Get(magic) || magic != kTriggerStateMagic) return bad("no TRG1 header");
  if (!r.Get(dim) || !r.Get(count)) return bad("truncated header");
  if (count > 0 && dim != input_dim) {
    return bad("triggers of " + std::to_string(dim) + " inputs, the model takes " + std::to_string(input_dim));
  }
  // Each trigger takes at least 5 + 8 * dim bytes: a count larger than the bytes left is a lie.
  if (count > r.rest.size() / (5 + 8 * static_cast<size_t>(dim))) return bad("more triggers than bytes");
  std::vector<RecoveredTrigger> triggers(count);
  for (RecoveredTrigger& t : triggers) {
    uint8_t flagged = 0;
    if (!r.Get(t.target) || !r.Get(flagged) || !r.Floats(t.mask, dim) || !r.Floats(t.pattern, dim)) {
      return bad("truncated trigger");
    }
    if (t.target < 0 || static_cast<size_t>(t.target) >= classes || flagged > 1) return bad("bad trigger target");
    t.flagged = flagged == 1;
    for (const std::vector<float>* v : {&t.mask, &t.pattern}) {
      for (float x : *v) {
        if (!(x >= 0.0f && x <= 1.0f)) return bad("a mask or pattern value outside [0, 1]");
      }
    }
  }
  uint32_t n = 0;
  if (!r.Get(n) || n > classes || n > r.rest.size() / 4) return bad("bad flag count");
  std::vector<uint32_t> flags(n);
  for (uint32_t& f : flags) r.Get(f);
  if (!r.Get(n) || n > input_dim || n > r.rest.size() / 4) return bad("bad pruned count");
  std::vector<uint32_t> pruned(n);
  for (size_t i = 0; i < n; ++i) {
    r.Get(pruned[i]);
    if (pruned[i] >= input_dim || (i > 0 && pruned[i] <= pruned[i - 1])) return bad("pruned inputs not ascending");
  }
  if (!r.rest.empty()) return bad(std::to_string(r.rest.size()) + " bytes after the end");
  triggers_ = std::move(triggers);
  flags_ = std::move(flags);
  pruned_ = std::move(pruned);
  return OkStatus();
}

std::string DescribePruning(uint32_t round, std::span<const uint32_t> pruned, size_t total) {
  std::string out = "round " + std::to_string(round) + ": pruned " + std::to_string(pruned.size()) + " inputs (";
  for (size_t i = 0; i < pruned.size(); ++i) {
    if (i > 0) out += ' ';
    out += std::to_string(pruned[i]);
  }
  out += "), ";
  out += std::to_string(total);
  out += " in all";
  return out;
}

namespace {

// The inputs that fill the bounding boxes of the compact clusters `added`
// touches: 8-connected components of added + pruned on a side x side image
// that hold an input of `added` and whose box area is at most fill x their
// size. Returns the box inputs in neither set, unordered.
std::vector<uint32_t> CompactClusterHoles(std::span<const uint32_t> added, std::span<const uint32_t> pruned,
                                          size_t side, float fill) {
  // 0: not in the set, 1: pruned before, 2: added now.
  std::vector<uint8_t> in(side * side, 0);
  for (uint32_t p : pruned) in[p] = 1;
  for (uint32_t p : added) in[p] = 2;
  std::vector<uint8_t> seen(side * side, 0);
  std::vector<uint32_t> holes, stack;
  for (uint32_t start : added) {
    if (seen[start]) continue;
    seen[start] = 1;
    stack.assign(1, start);
    size_t count = 0, top = side, bottom = 0, left = side, right = 0;
    while (!stack.empty()) {
      const uint32_t p = stack.back();
      stack.pop_back();
      ++count;
      const size_t row = p / side, col = p % side;
      top = std::min(top, row);
      bottom = std::max(bottom, row);
      left = std::min(left, col);
      right = std::max(right, col);
      for (size_t r = row == 0 ? 0 : row - 1; r <= std::min(row + 1, side - 1); ++r) {
        for (size_t c = col == 0 ? 0 : col - 1; c <= std::min(col + 1, side - 1); ++c) {
          const size_t q = r * side + c;
          if (in[q] != 0 && !seen[q]) {
            seen[q] = 1;
            stack.push_back(static_cast<uint32_t>(q));
          }
        }
      }
    }
    const size_t area = (bottom - top + 1) * (right - left + 1);
    if (static_cast<double>(area) > static_cast<double>(fill) * static_cast<double>(count)) continue;
    for (size_t r = top; r <= bottom; ++r) {
      for (size_t c = left; c <= right; ++c) {
        const size_t q = r * side + c;
        if (in[q] == 0) {
          in[q] = 2;  // a later component's box may overlap this one's: count each hole once
          seen[q] = 1;
          holes.push_back(static_cast<uint32_t>(q));
        }
      }
    }
  }
  return holes;
}

}  // namespace

std::vector<uint32_t> InputsToPrune(const RecoveredTrigger& t, std::span<const uint32_t> pruned,
                                    const TriggerScanConfig& cfg) {
  std::vector<uint32_t> order;
  for (size_t j = 0; j < t.mask.size(); ++j) {
    if (t.mask[j] >= cfg.prune_mask && !std::binary_search(pruned.begin(), pruned.end(), j)) {
      order.push_back(static_cast<uint32_t>(j));
    }
  }
  std::stable_sort(order.begin(), order.end(), [&t](uint32_t a, uint32_t b) { return t.mask[a] > t.mask[b]; });
  if (order.size() > cfg.prune) order.resize(cfg.prune);
  const auto side = static_cast<size_t>(std::lround(std::sqrt(static_cast<double>(t.mask.size()))));
  if (cfg.prune_grow > 0.0f && side * side == t.mask.size()) {
    // One ring around what the mask covers most: the faint edge of a patch.
    const std::vector<uint32_t> core = order;
    for (uint32_t p : core) {
      const auto row = static_cast<ptrdiff_t>(p / side), col = static_cast<ptrdiff_t>(p % side);
      for (ptrdiff_t dr = -1; dr <= 1; ++dr) {
        for (ptrdiff_t dc = -1; dc <= 1; ++dc) {
          const ptrdiff_t r = row + dr, c = col + dc;
          if (r < 0 || c < 0 || r >= static_cast<ptrdiff_t>(side) || c >= static_cast<ptrdiff_t>(side)) continue;
          const auto q = static_cast<uint32_t>(static_cast<size_t>(r) * side + static_cast<size_t>(c));
          if (t.mask[q] >= cfg.prune_grow && !std::binary_search(pruned.begin(), pruned.end(), q) &&
              std::find(order.begin(), order.end(), q) == order.end()) {
            order.push_back(q);
          }
        }
      }
    }
  }
  if (cfg.prune_fill >= 1.0f && side * side == t.mask.size() && !order.empty()) {
    const std::vector<uint32_t> holes = CompactClusterHoles(order, pruned, side, cfg.prune_fill);
    order.insert(order.end(), holes.begin(), holes.end());
  }
  std::sort(order.begin(), order.end());
  return order;
}

std::vector<uint32_t> TriggerDefense::PruneInputs(const RecoveredTrigger& t) {
  std::vector<uint32_t> order = InputsToPrune(t, pruned_, cfg_);
  std::vector<uint32_t> merged;
  std::set_union(pruned_.begin(), pruned_.end(), order.begin(), order.end(), std::back_inserter(merged));
  pruned_ = std::move(merged);
  return order;
}

std::string DescribeTriggerScan(uint32_t round, const TriggerScanReport& report) {
  size_t top = 0;
  for (size_t c = 1; c < report.anomaly.size(); ++c) {
    if (report.anomaly[c] > report.anomaly[top]) top = c;
  }
  const double median = report.mask_l1.empty() ? 0 : Median(report.mask_l1);
  char line[256];
  if (report.flagged >= 0) {
    const auto c = static_cast<size_t>(report.flagged);
    std::snprintf(line, sizeof line,
                  "round %u: trigger scan flagged class %d (anomaly index %.2f, mask L1 %.1f; median %.1f)", round,
                  report.flagged, report.anomaly[c], report.mask_l1[c], median);
  } else {
    std::snprintf(line, sizeof line,
                  "round %u: trigger scan found no outlier (largest anomaly index %.2f, class %zu, mask L1 %.1f; "
                  "median %.1f)",
                  round, report.anomaly.empty() ? 0.0 : report.anomaly[top], top,
                  report.mask_l1.empty() ? 0.0 : report.mask_l1[top], median);
  }
  std::string out = line;
  out += "; mask L1 by class:";
  for (double v : report.mask_l1) {
    std::snprintf(line, sizeof line, " %.1f", v);
    out += line;
  }
  if (!report.cover.empty()) {
    out += "; mask cover by class:";
    for (double v : report.cover) {
      std::snprintf(line, sizeof line, " %.3f", v);
      out += line;
    }
  }
  for (int32_t c : report.refused) {
    const auto k = static_cast<size_t>(c);
    std::snprintf(line, sizeof line, "; class %d refused (anomaly index %.2f, mask cover %.3f over the bar)", c,
                  report.anomaly[k], report.cover[k]);
    out += line;
  }
  return out;
}

Result<std::vector<uint32_t>> TriggerDefense::FrozenCoordinates(const Model& model) const {
  std::vector<uint32_t> frozen;
  if (pruned_.empty()) return frozen;
  FRUGAL_ASSIGN_OR_RETURN(const Mlp* mlp, AsMlp(model));
  // Layer 0's W is (hidden x input) row-major: input p's weights are p, p + in, p + 2 in, ...
  const size_t in = mlp->layer_sizes()[0], hidden = mlp->layer_sizes()[1];
  frozen.reserve(pruned_.size() * hidden);
  for (size_t o = 0; o < hidden; ++o) {
    for (uint32_t p : pruned_) frozen.push_back(static_cast<uint32_t>(o * in + p));
  }
  return frozen;
}

Result<TriggerRoundResult> TriggerDefense::Round(uint32_t round, const Model& model, std::span<const float> params,
                                                 const Dataset& data, std::span<const uint32_t> trusted,
                                                 TrainConfig train, uint64_t run_seed, ModelWorkspace& ws) {
  TriggerRoundResult out;
  if (cfg_.every == 0) return out;
  const uint64_t base = StreamSeed(run_seed, SeedStream::kTrustedTrain, round);
  if (round % cfg_.every == 0) {
    FRUGAL_ASSIGN_OR_RETURN(out.report,
                            ScanForTrigger(model, params, data, trusted, cfg_, DeriveSeed(base, 0x5CA9ULL)));
    out.scanned = true;
    for (RecoveredTrigger t : out.report.by_class) {
      if (t.target < 0 || cfg_.keep == 0) continue;
      const int32_t target = t.target;
      t.flagged = target == out.report.flagged;
      const bool suspect = std::any_of(triggers_.begin(), triggers_.end(),
                                       [target](const RecoveredTrigger& k) { return k.target == target; });
      if (!suspect && !t.flagged) continue;
      const bool flagged = t.flagged;
      auto same = [target, flagged](const RecoveredTrigger& k) { return k.target == target && k.flagged == flagged; };
      if (static_cast<size_t>(std::count_if(triggers_.begin(), triggers_.end(), same)) >= cfg_.keep) {
        triggers_.erase(std::find_if(triggers_.begin(), triggers_.end(), same));  // the oldest of its kind
      }
      triggers_.push_back(std::move(t));
    }
  }
  if (out.scanned && out.report.flagged >= 0 && cfg_.prune > 0) {
    const auto c = static_cast<size_t>(out.report.flagged);
    if (flags_.size() <= c) flags_.resize(c + 1, 0);
    if (++flags_[c] >= cfg_.prune_confirm) out.pruned = PruneInputs(out.report.trigger);
  }
  FRUGAL_ASSIGN_OR_RETURN(out.frozen, FrozenCoordinates(model));
  if (triggers_.empty()) return out;
  train.seed = DeriveSeed(base, 0x0DEA7ULL);
  FRUGAL_ASSIGN_OR_RETURN(out.correction, UnlearnTriggers(model, params, data, trusted, triggers_, train, cfg_, ws));
  return out;
}

}  // namespace frugal
