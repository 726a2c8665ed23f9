// The backdoor trigger scan with unlearning (frugal/round/trigger_scan.h):
// the anomaly index
// against a hand computation, a scan that must find a backdoor planted in a
// small MLP (and must not flag the same MLP trained on clean data), the
// unlearning that must remove it, and the engine adding the correction to the
// round's step. The data are synthetic (Gaussian clusters in 28 features) so
// that a backdoored model trains in milliseconds; the scan runs on real
// Fashion-MNIST in docs/benchmarks.md.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "frugal/codec/zero_set.h"
#include "frugal/core/config_reader.h"
#include "frugal/model/model.h"
#include "frugal/round/engine.h"
#include "frugal/round/model_payload.h"
#include "frugal/round/settings.h"
#include "frugal/round/trigger_scan.h"
#include "frugal/train/trainer.h"
#include "backdoor_data.h"
#include "round_test_util.h"

namespace frugal {
namespace {

using round_test::Clusters;
using round_test::kClasses;
using round_test::kFeatures;
using round_test::kTarget;
using round_test::kTriggerFeature;
using round_test::Poison;

// The share of `clean`'s examples of other classes that the model puts in class 0 once stamped.
double BackdoorSuccess(const Model& m, std::span<const float> w, const Dataset& clean) {
  Dataset stamped = clean;
  std::vector<uint32_t> idx;
  for (size_t i = 0; i < clean.size(); ++i) {
    if (clean.labels[i] == kTarget) continue;
    stamped.features[i * kFeatures + kTriggerFeature] = 1.0f;
    stamped.labels[i] = kTarget;
    idx.push_back(static_cast<uint32_t>(i));
  }
  auto ws = m.MakeWorkspace();
  auto r = Evaluate(m, w, stamped, idx, *ws);
  REQUIRE(r.ok());
  return r->accuracy;
}

std::vector<float> Trained(const Model& m, const Dataset& d) {
  std::vector<float> w(m.num_params());
  m.InitParams(w, 3);
  std::vector<uint32_t> all(d.size());
  std::iota(all.begin(), all.end(), 0u);
  auto ws = m.MakeWorkspace();
  TrainConfig t{.epochs = 30, .batch_size = 16, .learning_rate = 0.1f, .seed = 4};
  REQUIRE(Train(m, w, d, all, t, *ws).ok());
  return w;
}

std::vector<uint32_t> FirstN(size_t n) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  return v;
}

// A 28x28 trigger for class 0 whose mask covers the 4x4 corner patch (rows
// and columns 24-27) at 0.9 and the rest at 0.05; returns it and the patch's
// inputs, ascending.
std::pair<RecoveredTrigger, std::vector<uint32_t>> CornerPatchTrigger() {
  RecoveredTrigger t;
  t.target = 0;
  t.mask.assign(784, 0.05f);
  t.pattern.assign(784, 1.0f);
  std::vector<uint32_t> patch;
  for (uint32_t r = 24; r < 28; ++r) {
    for (uint32_t c = 24; c < 28; ++c) patch.push_back(r * 28 + c);
  }
  for (uint32_t p : patch) t.mask[p] = 0.9f;
  return {t, patch};
}

TEST_SUITE("round") {
  TEST_CASE("the anomaly index is the distance below the median in units of 1.4826 MAD") {
    // median 10; deviations 0 0 2 2 8, MAD 2.
    const std::vector<double> v = {10, 10, 12, 8, 2};
    const std::vector<double> a = LowAnomalyIndex(v);
    CHECK(a[0] == 0.0);
    CHECK(a[2] == 0.0);  // above the median
    CHECK(a[3] == doctest::Approx(2.0 / (1.4826 * 2)));
    CHECK(a[4] == doctest::Approx(8.0 / (1.4826 * 2)));
    CHECK(LowAnomalyIndex(std::vector<double>{3, 3, 3})[0] == 0.0);  // MAD 0: nothing stands out
  }

  TEST_CASE("the trigger scan finds a planted backdoor's class and trigger, and unlearning removes it") {
    Mlp m({kFeatures, 16, kClasses});
    const Dataset clean = Clusters(60, 21), test = Clusters(20, 22);
    const std::vector<float> w = Trained(m, Poison(clean, 5));
    REQUIRE(BackdoorSuccess(m, w, test) > 0.9);
    const std::vector<uint32_t> trusted = FirstN(60);  // ten clean examples per class
    TriggerScanConfig cfg;
    auto report = ScanForTrigger(m, w, clean, trusted, cfg, 5);
    REQUIRE(report.ok());
    CHECK(report->flagged == kTarget);
    REQUIRE(report->trigger.mask.size() == kFeatures);
    // The recovered mask puts its largest weight on the trigger's feature.
    const auto top = std::max_element(report->trigger.mask.begin(), report->trigger.mask.end());
    CHECK(static_cast<size_t>(top - report->trigger.mask.begin()) == kTriggerFeature);

    auto ws = m.MakeWorkspace();
    TrainConfig t{.epochs = 1, .batch_size = 16, .learning_rate = 0.1f, .seed = 6};
    cfg.unlearn_epochs = 10;
    const std::vector<RecoveredTrigger> triggers = {report->trigger};
    auto correction = UnlearnTriggers(m, w, clean, trusted, triggers, t, cfg, *ws);
    REQUIRE(correction.ok());
    std::vector<float> fixed = w;
    for (size_t j = 0; j < w.size(); ++j) fixed[j] += (*correction)[j];
    CHECK(BackdoorSuccess(m, fixed, test) < 0.2);
    auto acc = Evaluate(m, fixed, test, FirstN(test.size()), *ws);
    REQUIRE(acc.ok());
    CHECK(acc->accuracy > 0.9);
    // Nothing to unlearn: no correction.
    auto none = UnlearnTriggers(m, w, clean, trusted, {}, t, cfg, *ws);
    REQUIRE(none.ok());
    CHECK(std::all_of(none->begin(), none->end(), [](float v) { return v == 0.0f; }));
  }

  TEST_CASE("the trigger scan flags nothing on the same MLP trained on clean data, and the defence stays idle") {
    Mlp m({kFeatures, 16, kClasses});
    const Dataset clean = Clusters(60, 21);
    const std::vector<float> w = Trained(m, clean);
    TriggerScanConfig cfg;
    cfg.every = 2;
    TriggerDefense defense(cfg);
    auto ws = m.MakeWorkspace();
    const std::vector<uint32_t> trusted = FirstN(60);
    auto off_round = defense.Round(1, m, w, clean, trusted, TrainConfig{}, 7, *ws);
    REQUIRE(off_round.ok());
    CHECK_FALSE(off_round->scanned);
    auto scan_round = defense.Round(2, m, w, clean, trusted, TrainConfig{}, 7, *ws);
    REQUIRE(scan_round.ok());
    CHECK(scan_round->scanned);
    CHECK(scan_round->report.flagged == -1);
    CHECK(scan_round->correction.empty());
    CHECK(defense.triggers().empty());
    CHECK(DescribeTriggerScan(2, scan_round->report).find("found no outlier") != std::string::npos);
  }

  TEST_CASE("a flagged class stays in the defence's memory and is unlearnt every round") {
    Mlp m({kFeatures, 16, kClasses});
    const Dataset clean = Clusters(60, 21);
    const std::vector<float> w = Trained(m, Poison(clean, 5));
    TriggerScanConfig cfg;
    cfg.every = 3;
    cfg.keep = 2;
    TriggerDefense defense(cfg);
    auto ws = m.MakeWorkspace();
    const std::vector<uint32_t> trusted = FirstN(60);
    for (uint32_t round = 3; round <= 10; ++round) {
      auto r = defense.Round(round, m, w, clean, trusted, TrainConfig{}, 8, *ws);
      REQUIRE(r.ok());
      CHECK(r->scanned == (round % 3 == 0));
      CHECK_FALSE(r->correction.empty());  // a trigger is known from round 3 on
    }
    // Scans at rounds 3, 6 and 9, at most two remembered for class 0.
    CHECK(defense.triggers().size() == 2);
    for (const RecoveredTrigger& t : defense.triggers()) {
      CHECK(t.target == kTarget);
      CHECK(t.flagged);  // each came from a scan that flagged class 0
    }
  }

  TEST_CASE("a class flagged prune_confirm times has its trigger's inputs pruned, and their weights frozen") {
    Mlp m({kFeatures, 16, kClasses});
    const Dataset clean = Clusters(60, 21);
    const std::vector<float> w = Trained(m, Poison(clean, 5));
    TriggerScanConfig cfg;
    cfg.every = 1;
    cfg.prune = 1;
    cfg.prune_confirm = 2;
    cfg.unlearn_epochs = 0;
    TriggerDefense defense(cfg);
    auto ws = m.MakeWorkspace();
    const std::vector<uint32_t> trusted = FirstN(60);
    auto first = defense.Round(1, m, w, clean, trusted, TrainConfig{}, 8, *ws);
    REQUIRE(first.ok());
    REQUIRE(first->report.flagged == kTarget);
    CHECK(first->pruned.empty());  // one flag is not yet confirmation
    CHECK(first->frozen.empty());
    auto second = defense.Round(2, m, w, clean, trusted, TrainConfig{}, 8, *ws);
    REQUIRE(second.ok());
    REQUIRE(second->report.flagged == kTarget);
    CHECK(second->pruned == std::vector<uint32_t>{static_cast<uint32_t>(kTriggerFeature)});
    CHECK(defense.pruned() == second->pruned);
    // Feature 27's weight into each of the 16 hidden units: (hidden x input) row-major.
    REQUIRE(second->frozen.size() == 16);
    for (size_t o = 0; o < 16; ++o) CHECK(second->frozen[o] == o * kFeatures + kTriggerFeature);
    CHECK(DescribePruning(2, second->pruned, 1) == "round 2: pruned 1 inputs (27), 1 in all");
    // With that feature's weights at zero the trigger has no way in.
    std::vector<float> pruned = w;
    for (uint32_t j : second->frozen) pruned[j] = 0.0f;
    CHECK(BackdoorSuccess(m, w, clean) > 0.9);
    CHECK(BackdoorSuccess(m, pruned, clean) < 0.1);
  }

  TEST_CASE("a mask's cover is the trusted images' mean intensity under its strong part, as a plain loop computes it") {
    // Two images of 4 features by hand: means (0.5, 0, 0.5, 0.5).
    const std::vector<float> images = {1, 0, 0.5f, 0, 0, 0, 0.5f, 1};
    CHECK(MaskCover(std::vector<float>{1, 1, 0, 0}, images, 0.5f) == doctest::Approx(0.25));
    CHECK(MaskCover(std::vector<float>{0, 0.5f, 0, 0}, images, 0.5f) == 0.0);  // only where every image is black
    CHECK(MaskCover(std::vector<float>{0, 0, 0, 0}, images, 0.5f) == 0.0);     // an empty mask covers nothing
    // A strong input on black and a faint haze over the bright ones: the
    // haze is left out at floor 0.5 and counts at floor 0.
    const std::vector<float> haze = {0.1f, 0.9f, 0.1f, 0.1f};
    CHECK(MaskCover(haze, images, 0.5f) == 0.0);
    CHECK(MaskCover(haze, images, 0.0f) == doctest::Approx((0.1 * 0.5 * 3) / 1.2));
    // No input reaches the floor: the whole mask counts.
    CHECK(MaskCover(std::vector<float>{0.2f, 0, 0.2f, 0.2f}, images, 0.5f) == doctest::Approx(0.5));
    // Random masks and images against the definition, sum_j m_j mean_j / sum_j m_j over m_j >= floor.
    Rng rng(12);
    const size_t dim = 30, n = 7;
    std::vector<float> mask(dim), rows(n * dim);
    for (float& v : mask) v = static_cast<float>(rng.Uniform());
    for (float& v : rows) v = static_cast<float>(rng.Uniform());
    for (float floor : {0.0f, 0.5f, 0.9f}) {
      CAPTURE(floor);
      double num = 0, den = 0;
      for (size_t j = 0; j < dim; ++j) {
        if (mask[j] < floor) continue;
        double mean = 0;
        for (size_t i = 0; i < n; ++i) mean += rows[i * dim + j] / static_cast<double>(n);
        num += mask[j] * mean;
        den += mask[j];
      }
      REQUIRE(den > 0);
      CHECK(MaskCover(mask, rows, floor) == doctest::Approx(num / den).epsilon(1e-9));
    }
  }

  TEST_CASE("the scan flags the most anomalous class whose mask cover is under server.trigger_max_cover") {
    // By hand: classes 0 and 1 over the threshold 2, class 1 the more
    // anomalous but on the images (cover 0.4); class 3 has no mask (-1).
    const std::vector<double> anomaly = {3.0, 5.0, 0.0, 2.5}, cover = {0.05, 0.4, 0.1, -1.0};
    TriggerScanConfig cfg;
    std::vector<int32_t> refused = {7};
    CHECK(FlagOutlier(anomaly, cover, cfg, refused) == 1);  // off (1): the most anomalous, as before the key
    CHECK(refused.empty());
    cfg.max_cover = 0.2f;
    CHECK(FlagOutlier(anomaly, cover, cfg, refused) == 0);
    CHECK(refused == std::vector<int32_t>{1});
    cfg.max_cover = 0.01f;
    CHECK(FlagOutlier(anomaly, cover, cfg, refused) == -1);
    CHECK(refused == std::vector<int32_t>{1, 0});  // most anomalous first
    cfg.max_cover = 0.05f;  // a cover exactly at the bar passes (compared in float)
    CHECK(FlagOutlier(anomaly, cover, cfg, refused) == 0);
    cfg.anomaly = 4.0;
    CHECK(FlagOutlier(anomaly, cover, cfg, refused) == -1);  // class 0 is under the threshold now
    CHECK(refused == std::vector<int32_t>{1});

    // In the defence, on the planted backdoor: the report's covers are
    // MaskCover of each class's mask over the trusted rows (at prune_mask); a bar just under
    // class 0's refuses the flag (nothing remembered, unlearnt or pruned), a
    // bar at it lets it through.
    Mlp m({kFeatures, 16, kClasses});
    const Dataset clean = Clusters(60, 21);
    const std::vector<float> w = Trained(m, Poison(clean, 5));
    const std::vector<uint32_t> trusted = FirstN(60);
    std::vector<float> rows(trusted.size() * kFeatures);
    for (size_t i = 0; i < trusted.size(); ++i) clean.CopyRow(trusted[i], rows.data() + i * kFeatures);
    TriggerScanConfig scan;
    scan.every = 1;
    scan.prune = 1;
    scan.unlearn_epochs = 1;
    auto ws = m.MakeWorkspace();
    TriggerDefense open(scan);
    auto base = open.Round(1, m, w, clean, trusted, TrainConfig{}, 8, *ws);
    REQUIRE(base.ok());
    REQUIRE(base->report.flagged == kTarget);
    REQUIRE(base->report.cover.size() == kClasses);
    for (size_t c = 0; c < kClasses; ++c) {
      CAPTURE(c);
      const RecoveredTrigger& t = base->report.by_class[c];
      CHECK(base->report.cover[c] == (t.target < 0 ? -1.0 : MaskCover(t.mask, rows, scan.prune_mask)));
    }
    const double target_cover = base->report.cover[kTarget];
    CHECK(target_cover > 0.0);
    CHECK(target_cover < 0.5);  // the trigger's feature is a noise feature, near 0.1 in every image

    scan.max_cover = std::nextafter(static_cast<float>(target_cover), 0.0f);
    TriggerDefense strict(scan);
    auto refused_round = strict.Round(1, m, w, clean, trusted, TrainConfig{}, 8, *ws);
    REQUIRE(refused_round.ok());
    CHECK(refused_round->report.flagged == -1);
    CHECK(refused_round->report.refused == std::vector<int32_t>{kTarget});
    CHECK(refused_round->report.mask_l1 == base->report.mask_l1);  // the same search, only the verdict differs
    CHECK(strict.triggers().empty());
    CHECK(strict.pruned().empty());
    CHECK(refused_round->pruned.empty());
    CHECK(refused_round->correction.empty());
    CHECK(DescribeTriggerScan(1, refused_round->report).find("class 0 refused") != std::string::npos);

    scan.max_cover = static_cast<float>(target_cover);
    TriggerDefense at_bar(scan);
    auto flagged_round = at_bar.Round(1, m, w, clean, trusted, TrainConfig{}, 8, *ws);
    REQUIRE(flagged_round.ok());
    CHECK(flagged_round->report.flagged == kTarget);
    CHECK(flagged_round->report.refused.empty());
    CHECK(flagged_round->pruned == base->pruned);
    CHECK_FALSE(flagged_round->correction.empty());
  }

  TEST_CASE("the defence's memory survives State and SetState bit for bit, and damaged bytes are refused") {
    Mlp m({kFeatures, 16, kClasses});
    const Dataset clean = Clusters(60, 21);
    const std::vector<float> w = Trained(m, Poison(clean, 5));
    TriggerScanConfig cfg;
    cfg.every = 1;
    cfg.prune = 2;
    cfg.prune_confirm = 1;
    cfg.unlearn_epochs = 0;
    TriggerDefense defense(cfg);
    auto ws = m.MakeWorkspace();
    REQUIRE(defense.Round(1, m, w, clean, FirstN(60), TrainConfig{}, 8, *ws).ok());
    REQUIRE_FALSE(defense.triggers().empty());
    REQUIRE_FALSE(defense.pruned().empty());
    const std::vector<uint8_t> bytes = defense.State();

    TriggerDefense resumed(cfg);
    REQUIRE(resumed.SetState(bytes, kFeatures, kClasses).ok());
    CHECK(resumed.State() == bytes);
    CHECK(resumed.pruned() == defense.pruned());
    REQUIRE(resumed.triggers().size() == defense.triggers().size());
    CHECK(resumed.triggers()[0].mask == defense.triggers()[0].mask);
    CHECK(resumed.triggers()[0].target == kTarget);
    // The next round of both gives the same frozen coordinates.
    auto a = defense.Round(2, m, w, clean, FirstN(60), TrainConfig{}, 8, *ws);
    auto b = resumed.Round(2, m, w, clean, FirstN(60), TrainConfig{}, 8, *ws);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(a->frozen == b->frozen);

    TriggerDefense fresh(cfg);
    CHECK_FALSE(fresh.SetState(bytes, kFeatures + 1, kClasses).ok());  // another model's inputs
    CHECK_FALSE(fresh.SetState(std::span(bytes).first(bytes.size() - 1), kFeatures, kClasses).ok());
    std::vector<uint8_t> longer = bytes;
    longer.push_back(0);
    CHECK_FALSE(fresh.SetState(longer, kFeatures, kClasses).ok());
    std::vector<uint8_t> bad_value = bytes;
    bad_value[4 + 4 + 4 + 4 + 1 + 2] = 0xFF;  // inside the first mask value's bytes: a NaN
    bad_value[4 + 4 + 4 + 4 + 1 + 3] = 0xFF;
    CHECK_FALSE(fresh.SetState(bad_value, kFeatures, kClasses).ok());
    CHECK(fresh.triggers().empty());  // untouched by the refusals
    CHECK(fresh.pruned().empty());
    CHECK(fresh.SetState({}, kFeatures, kClasses).ok());  // empty: an empty memory
  }

  TEST_CASE("pruning grows one ring into a patch's faint edge when server.trigger_prune_grow is set") {
    // A 28x28 mask: the 4x4 corner patch (rows and columns 24-27) covered at
    // 0.9 except its two left pixels of the top rows (696, 724) at 0.3, a faint
    // pixel far away (0) at 0.3, the rest at 0.05.
    auto [t, patch] = CornerPatchTrigger();
    t.mask[696] = t.mask[724] = t.mask[0] = 0.3f;
    TriggerScanConfig cfg;
    cfg.prune = 16;
    std::vector<uint32_t> without_edge = patch;
    std::erase(without_edge, 696u);
    std::erase(without_edge, 724u);
    CHECK(InputsToPrune(t, {}, cfg) == without_edge);  // the mask's 14 pixels >= 0.5
    cfg.prune_grow = 0.1f;
    CHECK(InputsToPrune(t, {}, cfg) == patch);  // their neighbours at 0.3 join; pixel 0 and the 0.05s do not
    cfg.prune_grow = 0.5f;
    CHECK(InputsToPrune(t, {}, cfg) == without_edge);
    // Already pruned inputs are not returned again.
    cfg.prune_grow = 0.1f;
    const std::vector<uint32_t> before = {696, 783};
    std::vector<uint32_t> rest = patch;
    std::erase(rest, 696u);
    std::erase(rest, 783u);
    CHECK(InputsToPrune(t, before, cfg) == rest);
  }

  TEST_CASE("pruning fills the holes of a compact cluster when server.trigger_prune_fill is set") {
    // Seed 1's round-10 mask (docs/benchmarks.md, thirteenth session): the
    // 4x4 corner patch (rows and columns 24-27) at 0.9 except 696 and 724
    // (row 24 and 25, column 24) at 0.05, two stray pixels 747 (row 26,
    // column 19) and 771 (row 27, column 15) at 0.8, the rest at 0.05.
    auto [t, patch] = CornerPatchTrigger();
    t.mask[696] = t.mask[724] = 0.05f;
    t.mask[747] = t.mask[771] = 0.8f;
    TriggerScanConfig cfg;
    cfg.prune = 16;
    std::vector<uint32_t> chosen = patch;  // the 14 patch pixels >= 0.5 and the two strays
    std::erase(chosen, 696u);
    std::erase(chosen, 724u);
    chosen.push_back(747);
    chosen.push_back(771);
    std::sort(chosen.begin(), chosen.end());
    CHECK(InputsToPrune(t, {}, cfg) == chosen);
    // The 14 form one 8-connected cluster with a 4x4 box: 16 <= 2 x 14, so the
    // box is filled (696, 724 join). Each stray is a cluster of 1 with a 1x1
    // box: nothing to fill. The grow ring would not reach them (mask 0.05).
    cfg.prune_fill = 2.0f;
    std::vector<uint32_t> filled = chosen;
    filled.push_back(696);
    filled.push_back(724);
    std::sort(filled.begin(), filled.end());
    CHECK(InputsToPrune(t, {}, cfg) == filled);
    // At 1.1 the box must be nearly full: 16 > 1.1 x 14, nothing is filled.
    cfg.prune_fill = 1.1f;
    CHECK(InputsToPrune(t, {}, cfg) == chosen);
    // A diagonal line of 4 (a 4x4 box over 4 inputs) is not compact at 2.
    cfg.prune_fill = 2.0f;
    RecoveredTrigger line;
    line.target = 1;
    line.mask.assign(784, 0.0f);
    line.pattern.assign(784, 1.0f);
    const std::vector<uint32_t> diagonal = {0 * 28 + 0, 1 * 28 + 1, 2 * 28 + 2, 3 * 28 + 3};
    for (uint32_t p : diagonal) line.mask[p] = 0.9f;
    CHECK(InputsToPrune(line, {}, cfg) == diagonal);
    // Inputs pruned before join the clusters: a later flag that prunes only
    // 752 (row 26, column 24) next to an earlier, compact pruning of the
    // patch's other 13 pixels but 696 and 724 fills them (16 <= 2 x 14).
    RecoveredTrigger late;
    late.target = 0;
    late.mask.assign(784, 0.0f);
    late.pattern.assign(784, 1.0f);
    late.mask[752] = 0.9f;
    std::vector<uint32_t> before = patch;
    std::erase(before, 696u);
    std::erase(before, 724u);
    std::erase(before, 752u);
    CHECK(InputsToPrune(late, before, cfg) == std::vector<uint32_t>{696, 724, 752});
    // A cluster the flag does not touch is left alone: only pixel 0 is added.
    late.mask[752] = 0.0f;
    late.mask[0] = 0.9f;
    CHECK(InputsToPrune(late, before, cfg) == std::vector<uint32_t>{0});
  }

  TEST_CASE("the engine holds frozen coordinates at zero whatever the updates, after checking them") {
    const size_t d = 8;
    for (Pipeline p : {Pipeline::kDense, Pipeline::kFrugal}) {
      CAPTURE(static_cast<int>(p));
      EngineConfig cfg;
      cfg.pipeline = p;
      cfg.broadcast.density = 1.0;
      cfg.broadcast.values = ValueCoding::kFp32;  // exact steps: the check below is exact too
      RoundEngine e(round_test::RandomVector(d, 13, 1.0f), cfg);
      for (uint32_t round = 1; round <= 3; ++round) {
        REQUIRE(e.OpenRound(round, std::vector<uint64_t>{1}).ok());
        REQUIRE(e.Ingest(round, 1, e.version(), round_test::DenseUpdate(round_test::RandomVector(d, round, 1.0f)), 1.0)
                    .ok());
        CHECK_FALSE(e.SetServerFrozen({5, 1}).ok());  // not ascending
        CHECK_FALSE(e.SetServerFrozen({1, 8}).ok());  // out of the model
        REQUIRE(e.SetServerFrozen({1, 5}).ok());
        REQUIRE(e.CloseRound(1).ok());
        CHECK(e.global_model()[1] == 0.0f);
        CHECK(e.global_model()[5] == 0.0f);
        CHECK(std::fabs(e.global_model()[0]) > 0.0f);
      }
    }
  }

  TEST_CASE("after pruning, every client's copy is exactly zero on the frozen weights over rounds of ternary steps") {
    // Frugal's downlink as the runs use it: ternary top-0.5% steps with error
    // feedback. Client 1 follows every round, client 2 downloads a chain every
    // third round, client 3 joins at round 6 with a full model; all must hold
    // exact zeros on the frozen weights, and the chain-holders the server's model.
    const uint32_t d = 4 * 784 + 40;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kFrugal;
    cfg.broadcast.density = 0.005;
    RoundEngine e(round_test::RandomVector(d, 21, 0.05f), cfg);
    std::vector<uint32_t> frozen;  // inputs 696..699 and 780..783 of a 784-input, 4-unit first layer
    for (uint32_t o = 0; o < 4; ++o) {
      for (uint32_t p : {696u, 697u, 698u, 699u, 780u, 781u, 782u, 783u}) frozen.push_back(o * 784 + p);
    }
    struct Client {
      std::vector<float> model;
      uint32_t held = 0;
    };
    std::vector<Client> clients(4);
    auto download = [&](Client& c) {
      auto payload = e.ModelPayloadFor(c.held);
      REQUIRE(payload.ok());
      auto v = ApplyModelPayload(**payload, c.held, c.model, d);
      REQUIRE(v.ok());
      c.held = *v;
    };
    // Clients 1 and 2 hold version 1 exactly (as built from the run's seed), so chains keep them bit-exact.
    for (size_t c : {1, 2}) {
      clients[c].model.assign(e.global_model().begin(), e.global_model().end());
      clients[c].held = 1;
    }
    UplinkConfig up{.dense = false, .density = 0.05, .values = ValueCoding::kInt8};
    for (uint32_t round = 1; round <= 12; ++round) {
      CAPTURE(round);
      REQUIRE(e.OpenRound(round, std::vector<uint64_t>{1, 2}).ok());
      // Updates push hardest on the frozen weights, as an attacker teaching the trigger would.
      for (uint64_t id : {1, 2}) {
        std::vector<float> u = round_test::RandomVector(d, 100 * round + id, 0.01f);
        for (uint32_t j : frozen) u[j] = 0.5f;
        auto bytes = EncodeUplink(u, up, {});
        REQUIRE(bytes.ok());
        REQUIRE(e.Ingest(round, id, e.version(), *bytes, 1.0).ok());
      }
      if (round >= 3) REQUIRE(e.SetServerFrozen(frozen).ok());  // pruned at round 3
      auto out = e.CloseRound(1);
      REQUIRE(out.ok());
      REQUIRE(out->applied);
      CHECK(out->broadcast_bytes == e.StepPayload(e.version()).size());
      if (round >= 3) {
        for (uint32_t j : frozen) REQUIRE(e.global_model()[j] == 0.0f);
      }
      download(clients[1]);
      if (round % 3 == 0) download(clients[2]);
      if (round >= 6) download(clients[3]);
      const std::vector<float> server(e.global_model().begin(), e.global_model().end());
      CHECK(clients[1].model == server);
      if (round % 3 == 0) CHECK(clients[2].model == server);
      for (size_t c = 1; c <= 3; ++c) {
        if (clients[c].held == 0 || round < 3) continue;
        CAPTURE(c);
        for (uint32_t j : frozen) REQUIRE(clients[c].model[j] == 0.0f);
      }
    }
    // The round that froze them carried a zero set; later steps need none.
    CHECK(IsZeroSet(e.StepPayload(4)));
    CHECK_FALSE(IsZeroSet(e.StepPayload(e.version())));
    // A late joiner's full model carries the zeros; so does a restarted engine's,
    // once the frozen set is handed back (ServerDefense::Resume).
    auto full = e.ModelPayloadFor(0);
    REQUIRE(full.ok());
    std::vector<float> fresh;
    REQUIRE(ApplyModelPayload(**full, 0, fresh, d).ok());
    for (uint32_t j : frozen) CHECK(fresh[j] == 0.0f);
    auto restored = RoundEngine::Restore(round_test::Snapshot(e), cfg);
    REQUIRE(restored.ok());
    REQUIRE((*restored)->SetServerFrozen(frozen).ok());
    auto again = (*restored)->ModelPayloadFor(0);
    REQUIRE(again.ok());
    CHECK(**again == **full);
  }

  TEST_CASE("the server.trigger_* keys are read, and a scan without a trusted set is refused by name") {
    auto read = [](const std::string& text, RunSettings& s) -> Status {
      FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseToml(text, "scenario.toml"));
      ConfigReader r(t);
      return ReadRunSettings(r, s);
    };
    RunSettings s;
    REQUIRE(read("[server]\ntrigger_scan_every = 5\ntrigger_unlearn_epochs = 2\ntrigger_keep = 3\n"
                 "trigger_prune_grow = 0.1\ntrigger_prune_fill = 2\n", s).ok());
    CHECK(s.trigger_scan.prune_grow == 0.1f);
    CHECK(s.trigger_scan.prune_fill == 2.0f);
    RunSettings grow;
    CHECK_FALSE(read("[server]\ntrigger_scan_every = 5\ntrigger_prune_grow = 2\n", grow).ok());
    RunSettings fill;
    CHECK_FALSE(read("[server]\ntrigger_scan_every = 5\ntrigger_prune_fill = 0.5\n", fill).ok());
    RunSettings cover;
    REQUIRE(read("[server]\ntrigger_scan_every = 5\ntrigger_max_cover = 0.1\n", cover).ok());
    CHECK(cover.trigger_scan.max_cover == 0.1f);
    CHECK(s.trigger_scan.max_cover == 1.0f);  // off unless set
    RunSettings bad_cover;
    const Status cover_st = read("[server]\ntrigger_scan_every = 5\ntrigger_max_cover = 1.5\n", bad_cover);
    REQUIRE_FALSE(cover_st.ok());
    CHECK(cover_st.ToString().find("server.trigger_max_cover") != std::string::npos);
    RunSettings bad_floor;  // the bar counts inputs at >= server.trigger_prune_mask, so it must be valid without pruning too
    const Status floor_st = read("[server]\ntrigger_scan_every = 5\ntrigger_max_cover = 0.2\ntrigger_prune_mask = 0\n", bad_floor);
    REQUIRE_FALSE(floor_st.ok());
    CHECK(floor_st.ToString().find("server.trigger_prune_mask") != std::string::npos);
    CHECK(s.trigger_scan.every == 5);
    CHECK(s.trigger_scan.unlearn_epochs == 2);
    CHECK(s.trigger_scan.keep == 3);
    RunSettings bad;
    const Status st = read("[server]\ntrigger_scan_every = 5\ntrusted_examples = 0\n", bad);
    REQUIRE_FALSE(st.ok());
    CHECK(st.ToString().find("server.trusted_examples") != std::string::npos);
  }

  TEST_CASE("the engine adds the server's correction to the round's step, after checking it") {
    const size_t d = 8;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    RoundEngine e(std::vector<float>(d, 0.0f), cfg);
    CHECK_FALSE(e.SetServerCorrection(std::vector<float>(d, 1.0f)).ok());  // no round open
    const std::vector<float> u = round_test::RandomVector(d, 9, 1.0f), c = round_test::RandomVector(d, 10, 1.0f);
    REQUIRE(e.OpenRound(1, std::vector<uint64_t>{1}).ok());
    REQUIRE(e.Ingest(1, 1, e.version(), round_test::DenseUpdate(u), 1.0).ok());
    CHECK_FALSE(e.SetServerCorrection(std::vector<float>(d + 1, 0.0f)).ok());
    CHECK_FALSE(e.SetServerCorrection(std::vector<float>(d, std::nanf(""))).ok());
    REQUIRE(e.SetServerCorrection(c).ok());
    REQUIRE(e.CloseRound(1).ok());
    for (size_t j = 0; j < d; ++j) CHECK(e.global_model()[j] == u[j] + c[j]);
  }
}

}  // namespace
}  // namespace frugal
