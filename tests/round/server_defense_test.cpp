// The server's defence around a round's close (frugal/round/server_defense.h):
// a round that misses its quorum keeps the model as it was, and so keeps none
// of the trigger defence's changes, its pruned inputs above all; a round that
// closes keeps them and zeroes the pruned inputs' weights. The model is a
// small MLP with a backdoor planted in synthetic data (Gaussian clusters in 28
// features, the last one the trigger), so the scan flags and prunes at once.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/model/model.h"
#include "frugal/round/engine.h"
#include "frugal/round/server_defense.h"
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
using round_test::kTriggerFeature;
using round_test::Poison;

// Whether every pruned input's first-layer weights are exactly zero in `w`
// (an Mlp of kFeatures inputs: hidden x input, row-major): what the stored
// memory and the stored model must agree on.
bool PrunedWeightsZero(const TriggerDefense& t, std::span<const float> w, size_t hidden) {
  for (uint32_t p : t.pruned()) {
    for (size_t o = 0; o < hidden; ++o) {
      if (w[o * kFeatures + p] != 0.0f) return false;
    }
  }
  return true;
}

TEST_SUITE("round") {
  TEST_CASE("a round that misses its quorum keeps none of the trigger defence's changes: no pruned input without zero weights; the next closed round prunes") {
    const size_t hidden = 16;
    Mlp m({kFeatures, hidden, kClasses});
    const Dataset data = Poison(Clusters(60, 21), 5);
    std::vector<float> w(m.num_params());
    m.InitParams(w, 3);
    auto ws = m.MakeWorkspace();
    std::vector<uint32_t> all(data.size());
    std::iota(all.begin(), all.end(), 0u);
    REQUIRE(Train(m, w, data, all, TrainConfig{.epochs = 30, .batch_size = 16, .learning_rate = 0.1f, .seed = 4},
                  *ws)
                .ok());

    RunSettings s;
    s.engine.pipeline = Pipeline::kDense;
    s.trusted_examples = 120;
    s.trigger_scan.every = 1;
    s.trigger_scan.prune = 1;
    s.trigger_scan.unlearn_epochs = 0;
    auto defense = ServerDefense::Create(s, data.size());
    REQUIRE(defense.ok());
    REQUIRE(*defense != nullptr);
    ServerDefense& d = **defense;
    RoundEngine engine(w, s.engine);
    const std::vector<uint8_t> empty_memory = TriggerDefense(s.trigger_scan).State();
    const std::vector<uint8_t> zero = round_test::DenseUpdate(std::vector<float>(m.num_params(), 0.0f));
    const uint64_t clients[] = {7, 8};

    // Round 1: the scan flags class 0 and prunes the trigger's input, but one
    // update of the two the quorum needs came: the model stays as it was.
    REQUIRE(engine.OpenRound(1, clients).ok());
    REQUIRE(engine.Ingest(1, 7, engine.version(), zero, 1.0).ok());
    auto first = d.BeforeClose(engine, m, data, *ws);
    REQUIRE(first.ok());
    REQUIRE(first->columns.flagged == 0);  // the test tests something: the scan did prune
    REQUIRE(first->columns.pruned == 1);
    REQUIRE(engine.server_frozen().size() == hidden);
    auto missed = engine.CloseRound(2);
    REQUIRE(missed.ok());
    REQUIRE_FALSE(missed->applied);
    REQUIRE(d.AfterClose(*missed, engine, m, *first).ok());
    CHECK(std::equal(engine.global_model().begin(), engine.global_model().end(), w.begin(), w.end()));
    // What the store would keep with that round: the memory before it, which agrees with the model.
    CHECK(d.trigger()->State() == empty_memory);
    CHECK(d.trigger()->pruned().empty());
    CHECK(PrunedWeightsZero(*d.trigger(), engine.global_model(), hidden));
    CHECK(engine.server_frozen().empty());
    CHECK(first->columns.pruned == 0);
    CHECK(first->columns.known == 0);
    REQUIRE_FALSE(first->notes.empty());
    CHECK(first->notes.back() == "round 1: quorum not met, the model is unchanged: the trigger scan's findings of "
                                 "this round and its pruning of 1 inputs are dropped with it");
    CHECK(d.SummaryMetrics().at("trigger_pruned_inputs") == 0);

    // Round 2 closes: the same scan prunes the input again, and the model is zero there.
    REQUIRE(engine.OpenRound(2, clients).ok());
    REQUIRE(engine.Ingest(2, 7, engine.version(), zero, 1.0).ok());
    REQUIRE(engine.Ingest(2, 8, engine.version(), zero, 1.0).ok());
    auto second = d.BeforeClose(engine, m, data, *ws);
    REQUIRE(second.ok());
    auto closed = engine.CloseRound(2);
    REQUIRE(closed.ok());
    REQUIRE(closed->applied);
    const size_t notes = second->notes.size();
    REQUIRE(d.AfterClose(*closed, engine, m, *second).ok());
    CHECK(second->notes.size() == notes);
    CHECK(second->columns.pruned == 1);
    CHECK(d.trigger()->pruned() == std::vector<uint32_t>{static_cast<uint32_t>(kTriggerFeature)});
    CHECK(d.trigger()->State() != empty_memory);
    CHECK(engine.server_frozen().size() == hidden);
    CHECK(PrunedWeightsZero(*d.trigger(), engine.global_model(), hidden));
    CHECK(w[kTriggerFeature] != 0.0f);  // it was not zero before
  }
}

}  // namespace
}  // namespace frugal
