// The round's orchestration in the core, which both front ends drive: the
// planner (selection and its estimates), the accounting (ledger rows and the
// round record), the shared run settings and their renamed keys, and the
// engine's arrival-order independence.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "frugal/codec/uplink.h"
#include "frugal/core/config_reader.h"
#include "frugal/core/random.h"
#include "frugal/core/streams.h"
#include "frugal/energy/model.h"
#include "frugal/energy/profiles.h"
#include "frugal/round/accounting.h"
#include "frugal/round/engine.h"
#include "frugal/round/lean_round.h"
#include "frugal/round/planner.h"
#include "frugal/round/settings.h"

namespace frugal {
namespace {

struct Profiles {
  EnergyProfiles all = *EnergyProfiles::LoadDefault();
  const DeviceProfile* phone = *all.Device("phone-low");
  const DeviceProfile* laptop = *all.Device("laptop");
  const RadioProfile* wifi = *all.Radio("wifi");
  const RadioProfile* lte = *all.Radio("lte");
  const RegionProfile* world = *all.Region("world");
};

}  // namespace

TEST_SUITE("round") {
  TEST_CASE("the same updates give the same model bit for bit whatever order they arrive in") {
    // Floating-point sums depend on order: (1e30 + 1) - 1e30 is 0, (1e30 - 1e30) + 1 is 1.
    const size_t d = 8;
    auto dense = [&](float v) {
      std::vector<float> u(d, 0.0f);
      u[0] = v;
      u[5] = v / 3;
      UplinkConfig cfg;
      cfg.dense = true;
      auto r = EncodeUplink(u, cfg, {});
      REQUIRE(r.ok());
      return *r;
    };
    const std::map<uint64_t, std::vector<uint8_t>> updates{{1, dense(1e30f)}, {2, dense(1.0f)}, {3, dense(-1e30f)}};
    std::vector<std::vector<float>> models;
    for (const std::vector<uint64_t>& order : {std::vector<uint64_t>{1, 2, 3}, {1, 3, 2}, {3, 2, 1}}) {
      EngineConfig cfg;
      cfg.pipeline = Pipeline::kDense;
      RoundEngine engine(std::vector<float>(d, 0.0f), cfg);
      const std::vector<uint64_t> selected{1, 2, 3};
      REQUIRE(engine.OpenRound(1, selected).ok());
      for (uint64_t c : order) REQUIRE(engine.Ingest(1, c, 1, updates.at(c), 1.0).ok());
      REQUIRE(engine.CloseRound(1).ok());
      models.emplace_back(engine.global_model().begin(), engine.global_model().end());
    }
    // Folded in client-id order: ((1e30 + 1) - 1e30) / 3 = 0 every time.
    CHECK(models[0][0] == 0.0f);
    CHECK(std::memcmp(models[0].data(), models[1].data(), 4 * d) == 0);
    CHECK(std::memcmp(models[0].data(), models[2].data(), 4 * d) == 0);
  }

  TEST_CASE("the planner selects as SelectClients / SelectClientsWeighted with the run's select stream") {
    Profiles p;
    RunSettings s;
    s.seed = 5;
    s.plan.clients_per_round = 3;
    std::vector<Candidate> c;
    for (uint32_t id = 10; id < 30; ++id) {
      c.push_back(Candidate{id, id % 2 ? p.phone : p.laptop, id % 3 ? p.wifi : p.lte, p.world, 100 + id});
    }
    std::vector<uint32_t> ids;
    for (const Candidate& x : c) ids.push_back(x.id);
    const RoundPlanner uniform(s, FlopCount{10, 20});
    CHECK(uniform.Select(4, c, 12, 1000) == SelectClients(ids, 3, StreamSeed(5, SeedStream::kSelect, 4)));

    s.plan.selection = SelectionPolicy::kEnergy;
    s.task.train.epochs = 2;
    RoundPlanner energy(s, FlopCount{10, 20});
    // Before any round, the first payload stands for both directions.
    const ParticipationEstimate first = energy.Estimate(c[0], 1000);
    CHECK(first.flops == 30.0 * (110 * 2));
    CHECK(first.bytes_down == 1000);
    CHECK(first.bytes_up == 1000);
    std::vector<double> w;
    for (const Candidate& x : c) {
      w.push_back(SelectionWeight(SelectionPolicy::kEnergy, *x.device, *x.radio, *x.region, 12, energy.Estimate(x, 1000)));
    }
    CHECK(energy.Select(4, c, 12, 1000) == SelectClientsWeighted(ids, w, 3, StreamSeed(5, SeedStream::kSelect, 4)));
    // round.selection_exponent tempers the weights: (1 / joules)^0.5, and 0 gives every client weight 1.
    {
      RunSettings tempered_settings = s;
      tempered_settings.plan.selection_exponent = 0.5;
      const RoundPlanner tempered(tempered_settings, FlopCount{10, 20});
      std::vector<double> w_half, w_flat;
      for (const Candidate& x : c) {
        const double joules = ExpectedParticipationJoules(*x.device, *x.radio, tempered.Estimate(x, 1000));
        w_half.push_back(1.0 / std::sqrt(joules));
        w_flat.push_back(1.0);
        CHECK(SelectionWeight(SelectionPolicy::kEnergy, *x.device, *x.radio, *x.region, 12,
                              tempered.Estimate(x, 1000), 0.5) == doctest::Approx(1.0 / std::sqrt(joules)));
      }
      const uint64_t seed4 = StreamSeed(5, SeedStream::kSelect, 4);
      bool differs = false;  // over rounds, the tempered draw is not the untempered one
      for (uint32_t round = 1; round <= 20; ++round) {
        const uint64_t seed = StreamSeed(5, SeedStream::kSelect, round);
        CHECK(tempered.Select(round, c, 12, 1000) == SelectClientsWeighted(ids, w_half, 3, seed));
        differs = differs || SelectClientsWeighted(ids, w_half, 3, seed) != SelectClientsWeighted(ids, w, 3, seed);
      }
      CHECK(differs);
      tempered_settings.plan.selection_exponent = 0;
      const RoundPlanner flat(tempered_settings, FlopCount{10, 20});
      CHECK(flat.Select(4, c, 12, 1000) == SelectClientsWeighted(ids, w_flat, 3, seed4));
    }
    // After a round, its mean sizes per selected client.
    RoundRecord r;
    r.selected = 4;
    r.bytes_down = 4000;
    r.bytes_up = 400;
    energy.Observe(r);
    const ParticipationEstimate next = energy.Estimate(c[0], 1000);
    CHECK(next.bytes_down == 1000);
    CHECK(next.bytes_up == 100);
  }

  TEST_CASE("the planner estimates a [widths] class at its sub-network's FLOPs, before and after a prune step") {
    Profiles p;
    RunSettings s;
    s.task.train.epochs = 3;
    const Mlp full(std::vector<size_t>{20, 16, 12, 4});
    const std::pair<std::string, double> widths[] = {{p.phone->id, 0.5}};
    auto lean = LeanRound::Create(full, PruneConfig{.target_flops_fraction = 0.5}, widths, Pipeline::kFrugal);
    REQUIRE(lean.ok());
    RoundPlanner planner(s, full.flops_per_example());
    planner.SetFlopsPerExample(full.flops_per_example(), lean->TrainFlopsByDevice());
    const Candidate low{1, p.phone, p.wifi, p.world, 50};
    const Candidate wide{2, p.laptop, p.wifi, p.world, 50};
    // Plain reference: the half-width sub-network written out by hand (ceil(0.5 x 16), ceil(0.5 x 12) units).
    const Mlp half(std::vector<size_t>{20, 8, 6, 4});
    auto train_flops = [](const Model& m) { return m.flops_per_example().forward + m.flops_per_example().backward; };
    CHECK(planner.Estimate(low, 1000).flops == 50.0 * 3 * train_flops(half));
    CHECK(planner.Estimate(wide, 1000).flops == 50.0 * 3 * train_flops(full));
    // After a prune step to 10 and 6 units (a resumed run's shape), the narrow class trains 5 and 3.
    const MlpShapeChange pruned{{20, 16, 12, 4}, {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {0, 2, 4, 6, 8, 10}}};
    REQUIRE(lean->Resume(pruned).ok());
    const Mlp pruned_model(std::vector<size_t>{20, 10, 6, 4});
    planner.SetFlopsPerExample(pruned_model.flops_per_example(), lean->TrainFlopsByDevice());
    CHECK(planner.Estimate(low, 1000).flops == 50.0 * 3 * train_flops(Mlp(std::vector<size_t>{20, 5, 3, 4})));
    CHECK(planner.Estimate(wide, 1000).flops == 50.0 * 3 * train_flops(pruned_model));
    // A shape of another model is refused, and the lean state is left as it was.
    const MlpShapeChange foreign{{20, 17, 12, 4}, {{0}, {0}}};
    CHECK_FALSE(lean->Resume(foreign).ok());
    CHECK(lean->sizes() == std::vector<uint32_t>{20, 10, 6, 4});
  }

  TEST_CASE("round.sampling = poisson: each client drawn on its own at q = selected count / eligible, as a plain loop; the accountant's rate is q") {
    // The plain reference: one uniform per candidate in order, kept below q.
    std::vector<uint32_t> ids;
    for (uint32_t id = 100; id < 400; ++id) ids.push_back(id);
    const uint64_t seed = StreamSeed(7, SeedStream::kSelect, 3);
    Rng rng(seed);
    std::vector<uint32_t> expect;
    for (uint32_t id : ids) {
      if (rng.Uniform() < 0.1) expect.push_back(id);
    }
    CHECK(SelectClientsPoisson(ids, 0.1, seed) == expect);
    CHECK(SelectClientsPoisson(ids, 0, seed).empty());
    CHECK(SelectClientsPoisson(ids, 1, seed) == ids);
    // Each client's inclusion frequency over 2,000 rounds is q (within 5 binomial sd), and round sizes vary.
    std::vector<uint32_t> hits(ids.size(), 0);
    std::set<size_t> sizes;
    for (uint32_t r = 0; r < 2000; ++r) {
      const std::vector<uint32_t> got = SelectClientsPoisson(ids, 0.1, StreamSeed(7, SeedStream::kSelect, r));
      sizes.insert(got.size());
      for (uint32_t id : got) ++hits[id - 100];
    }
    CHECK(sizes.size() > 5);
    const double sd = std::sqrt(2000 * 0.1 * 0.9);
    for (uint32_t h : hits) CHECK(std::fabs(h - 200.0) < 5 * sd + 1e-9);

    // The planner draws so, at q = SelectCount() / eligible, with the run's select stream.
    Profiles p;
    RunSettings s;
    s.seed = 7;
    s.plan.clients_per_round = 30;
    s.plan.poisson = true;
    std::vector<Candidate> c;
    for (uint32_t id : ids) c.push_back(Candidate{id, p.phone, p.wifi, p.world, 100});
    const RoundPlanner planner(s, FlopCount{10, 20});
    CHECK(planner.Select(3, c, 12, 1000) == expect);
    CHECK(s.plan.SamplingRate(expect.size(), ids.size()) == 0.1);
    CHECK(s.plan.SamplingRate(1000, 10) == 1.0);
    s.plan.poisson = false;
    CHECK(s.plan.SamplingRate(expect.size(), ids.size()) == static_cast<double>(expect.size()) / 300);

    // Settings: the key, and what it cannot be combined with.
    auto read = [](std::vector<std::string> sets) {
      auto t = ParseTomlWithOverrides("", "test", sets);
      REQUIRE(t.ok());
      ConfigReader r(*t);
      RunSettings rs;
      Status st = ReadRunSettings(r, rs);
      return std::make_pair(st, rs.plan.poisson);
    };
    CHECK(read({"round.sampling=\"poisson\""}).first.ok());
    {
      auto t = ParseTomlWithOverrides("", "test", {"round.selection_exponent=0.5"});
      REQUIRE(t.ok());
      ConfigReader r(*t);
      RunSettings rs;
      REQUIRE(ReadRunSettings(r, rs).ok());
      CHECK(rs.plan.selection_exponent == 0.5);
      CHECK(RunSettings{}.plan.selection_exponent == 1.0);
      for (const char* bad : {"round.selection_exponent=-0.5", "round.selection_exponent=5.0"}) {
        auto tb = ParseTomlWithOverrides("", "test", {bad});
        REQUIRE(tb.ok());
        ConfigReader rb(*tb);
        RunSettings rsb;
        const Status st = ReadRunSettings(rb, rsb);
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().message().find("round.selection_exponent") != std::string::npos);
      }
    }
    CHECK(read({"round.sampling=\"poisson\""}).second);
    CHECK_FALSE(read({}).second);
    // The accountant composes the bound for the sampling that runs: fixed-size (replace-one) by default,
    // Poisson (add/remove) with round.sampling = "poisson"; summary.json says which, and whether the
    // selection is the uniform one the bound assumes.
    auto settings = [](std::vector<std::string> sets) {
      auto t = ParseTomlWithOverrides("", "test", sets);
      REQUIRE(t.ok());
      ConfigReader r(*t);
      RunSettings rs;
      REQUIRE(ReadRunSettings(r, rs).ok());
      return rs;
    };
    const std::vector<std::string> central = {"pipeline=\"dense\"", "privacy.mode=\"central\"",
                                              "privacy.noise_multiplier=1.0"};
    RunSettings fixed = settings(central);
    CHECK(fixed.engine.dp.sampling == privacy::SamplingScheme::kFixedSize);
    DpAccountingLabel label = DescribeDpAccounting(fixed.plan, fixed.engine.dp);
    CHECK(label.sampling == "fixed_size");
    CHECK(label.adjacency == "replace_one");
    CHECK(label.bound == "proven");
    std::vector<std::string> with_poisson = central;
    with_poisson.push_back("round.sampling=\"poisson\"");
    RunSettings poisson = settings(with_poisson);
    CHECK(poisson.engine.dp.sampling == privacy::SamplingScheme::kPoisson);
    label = DescribeDpAccounting(poisson.plan, poisson.engine.dp);
    CHECK(label.sampling == "poisson");
    CHECK(label.adjacency == "add_remove_one");
    std::vector<std::string> weighted = central;
    weighted.push_back("round.selection=\"energy\"");
    label = DescribeDpAccounting(settings(weighted).plan, settings(weighted).engine.dp);
    CHECK(label.sampling == "fixed_size");
    CHECK(label.bound.find("approximate") == 0);
    CHECK(DescribeDpAccounting(settings({}).plan, settings({}).engine.dp).sampling.empty());
    // The run report's sentence names the bound the label names, never the other one.
    const std::string fixed_text = DpAccountingSentence(fixed.plan, fixed.engine.dp, "eligible");
    CHECK(fixed_text.find("without replacement") != std::string::npos);
    CHECK(fixed_text.find("Poisson") == std::string::npos);
    CHECK(fixed_text.find("proven") != std::string::npos);
    const std::string poisson_text = DpAccountingSentence(poisson.plan, poisson.engine.dp, "connected");
    CHECK(poisson_text.find("Poisson") != std::string::npos);
    CHECK(poisson_text.find("q = selected / connected clients") != std::string::npos);
    CHECK(DpAccountingSentence(settings(weighted).plan, settings(weighted).engine.dp, "eligible").find("approximate") !=
          std::string::npos);
    CHECK(DpAccountingSentence(settings({}).plan, settings({}).engine.dp, "eligible").empty());
    for (const auto& bad : std::vector<std::vector<std::string>>{
             {"round.sampling=\"bernoulli\""},
             {"round.sampling=\"poisson\"", "pipeline=\"secure\""},
             {"round.sampling=\"poisson\"", "carbon.region_floor=0.5"}}) {
      const Status st = read(bad).first;
      REQUIRE_FALSE(st.ok());
      CHECK(st.error().message().find("round.sampling") != std::string::npos);
    }
  }

  TEST_CASE(
      "weighted Poisson selection: probabilities are the weights' shares held at the cap, drawn as a plain loop, "
      "and the accountant's rate is the cap") {
    // Plain reference for the probabilities: bisection on c for sum_i min(cap, c w_i) = expected.
    Rng wr(11);
    std::vector<double> w(500);
    for (double& x : w) x = std::exp(3 * wr.Uniform());  // weights spread over a factor 20
    w[7] = 0;
    w[8] = -1;
    w[9] = std::numeric_limits<double>::infinity();
    const double expected = 50, cap = 0.2;
    auto reference = [&](double want) {
      double lo = 0, hi = 1e6;
      auto total = [&](double c) {
        double t = 0;
        for (double x : w) t += x > 0 && std::isfinite(x) ? std::min(cap, c * x) : 0;
        return t;
      };
      for (int i = 0; i < 200; ++i) (total((lo + hi) / 2) < want ? lo : hi) = (lo + hi) / 2;
      std::vector<double> p;
      for (double x : w) p.push_back(x > 0 && std::isfinite(x) ? std::min(cap, hi * x) : 0);
      return p;
    };
    const std::vector<double> p = CappedInclusionProbabilities(w, expected, cap);
    const std::vector<double> ref = reference(expected);
    REQUIRE(p.size() == w.size());
    double sum = 0, most = 0;
    size_t at_cap = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      CHECK(p[i] == doctest::Approx(ref[i]).epsilon(1e-9));
      sum += p[i];
      most = std::max(most, p[i]);
      at_cap += p[i] == cap ? 1 : 0;
    }
    CHECK(sum == doctest::Approx(expected).epsilon(1e-12));
    CHECK(most == cap);
    CHECK(at_cap > 0);             // the weights are skewed enough that the cap binds
    CHECK(at_cap < p.size() / 2);  // and it binds only the heaviest
    CHECK(p[7] == 0);
    CHECK(p[8] == 0);
    CHECK(p[9] == 0);
    // Equal weights: every client at expected / n; asking for more than the cap allows: all at the cap.
    CHECK(CappedInclusionProbabilities(std::vector<double>(100, 3.0), 10, 0.5) == std::vector<double>(100, 0.1));
    CHECK(CappedInclusionProbabilities(std::vector<double>{1, 2, 3}, 5, 0.5) == std::vector<double>{0.5, 0.5, 0.5});

    // The draw is one uniform per candidate in order, kept below its probability, and each client's
    // frequency over 2,000 rounds is its probability (within 5 binomial sd).
    std::vector<uint32_t> ids;
    for (uint32_t id = 0; id < 500; ++id) ids.push_back(id);
    const uint64_t seed = StreamSeed(7, SeedStream::kSelect, 3);
    Rng rng(seed);
    std::vector<uint32_t> expect;
    for (uint32_t id : ids) {
      if (rng.Uniform() < p[id]) expect.push_back(id);
    }
    CHECK(SelectClientsPoissonWeighted(ids, w, expected, cap, seed) == expect);
    std::vector<uint32_t> hits(ids.size(), 0);
    for (uint32_t r = 0; r < 2000; ++r) {
      for (uint32_t id : SelectClientsPoissonWeighted(ids, w, expected, cap, StreamSeed(7, SeedStream::kSelect, r))) {
        ++hits[id];
      }
    }
    for (uint32_t id : ids) {
      const double sd = std::sqrt(2000 * p[id] * (1 - p[id]));
      CAPTURE(id);
      CHECK(std::fabs(hits[id] - 2000 * p[id]) <= 5 * sd + 1e-9);
    }

    // The planner draws so with the energy weights of its candidates, and the accountant's rate is
    // min(1, inclusion_cap * SelectCount() / eligible), never less than any client's probability.
    Profiles prof;
    RunSettings s;
    s.seed = 7;
    s.plan.clients_per_round = 30;
    s.plan.poisson = true;
    s.plan.selection = SelectionPolicy::kEnergy;
    s.plan.inclusion_cap = 2;
    std::vector<Candidate> c;
    for (uint32_t id = 0; id < 300; ++id) {
      c.push_back(Candidate{id, id % 3 == 0 ? prof.laptop : prof.phone, id % 2 == 0 ? prof.wifi : prof.lte,
                            prof.world, 100});
    }
    const RoundPlanner planner(s, FlopCount{10, 20});
    std::vector<double> cw;
    std::vector<uint32_t> cids;
    for (const Candidate& x : c) {
      cids.push_back(x.id);
      cw.push_back(SelectionWeight(SelectionPolicy::kEnergy, *x.device, *x.radio, *x.region, 12,
                                   planner.Estimate(x, 1000)));
    }
    const double q_cap = s.plan.SamplingRate(0, 300);
    CHECK(q_cap == doctest::Approx(0.2));
    const std::vector<double> cp = CappedInclusionProbabilities(cw, 30, q_cap);
    CHECK(*std::max_element(cp.begin(), cp.end()) <= q_cap);
    CHECK(*std::min_element(cp.begin(), cp.end()) < 0.1);  // unequal chances: some below the uniform 30/300
    const uint64_t round_seed = StreamSeed(7, SeedStream::kSelect, 4);
    CHECK(planner.Select(4, c, 12, 1000) == SelectClientsPoissonWeighted(cids, cw, 30, q_cap, round_seed));
    CHECK(s.plan.SamplingRate(17, 300) == q_cap);  // not the realized count
    CHECK(s.plan.SamplingRate(0, 40) == 1.0);
    s.plan.selection_exponent = 0;  // tempered to uniform: the uniform rate
    CHECK(s.plan.SamplingRate(0, 300) == doctest::Approx(0.1));

    // Settings: the key, its range, and the label: proven under Poisson, approximate under fixed-size.
    auto settings = [](std::vector<std::string> sets) {
      auto t = ParseTomlWithOverrides("", "test", sets);
      REQUIRE(t.ok());
      ConfigReader r(*t);
      RunSettings rs;
      Status st = ReadRunSettings(r, rs);
      return std::make_pair(st, rs);
    };
    const std::vector<std::string> central = {"pipeline=\"dense\"", "privacy.mode=\"central\"",
                                              "privacy.noise_multiplier=1.0", "round.selection=\"energy\""};
    CHECK(RunSettings{}.plan.inclusion_cap == 2.0);
    std::vector<std::string> sets = central;
    sets.push_back("round.sampling=\"poisson\"");
    sets.push_back("round.inclusion_cap=3.5");
    auto [st, rs] = settings(sets);
    REQUIRE(st.ok());
    CHECK(rs.plan.inclusion_cap == 3.5);
    DpAccountingLabel label = DescribeDpAccounting(rs.plan, rs.engine.dp);
    CHECK(label.sampling == "poisson");
    CHECK(label.adjacency == "add_remove_one");
    CHECK(label.bound == "proven");
    auto fixed = settings(central);
    REQUIRE(fixed.first.ok());
    label = DescribeDpAccounting(fixed.second.plan, fixed.second.engine.dp);
    CHECK(label.bound.find("approximate") == 0);
    CHECK(label.bound.find("round.sampling") != std::string::npos);
    for (const char* bad : {"round.inclusion_cap=0.5", "round.inclusion_cap=-1.0", "round.inclusion_cap=2e6"}) {
      auto [bst, brs] = settings({bad});
      CAPTURE(bad);
      REQUIRE_FALSE(bst.ok());
      CHECK(bst.error().message().find("round.inclusion_cap") != std::string::npos);
    }
  }

  TEST_CASE("the round account costs each participation as MakeLedgerRow and sums the record from the rows") {
    Profiles p;
    RoundAccount account("run", 3, 18.5);
    Participation done;
    done.client = 7;
    done.device = p.phone;
    done.radio = p.lte;
    done.region = p.world;
    done.flops = 2e9;
    done.bytes_down = 50000;
    done.bytes_up = 3000;
    Participation late = done;
    late.client = 8;
    late.outcome = ClientOutcome::kStraggled;
    Participation gone = done;
    gone.client = 9;
    gone.outcome = ClientOutcome::kDropped;
    gone.bytes_up.reset();
    for (const Participation& x : {done, late, gone}) account.Add(x);
    account.SetCompleted(1);

    // The schedule the simulator's virtual clock uses: upload after the download and the compute.
    const double up_at = TransferSeconds(*p.lte, 50000, Direction::kDown) + ComputeSeconds(*p.phone, 2e9);
    const Transfer sched[] = {{0.0, 50000, Direction::kDown}, {up_at, 3000, Direction::kUp}};
    ClientRoundUsage u;
    u.round = 3;
    u.client_id = 7;
    u.flops = 2e9;
    u.transfers = sched;
    u.utc_hour = 18.5;
    const LedgerRow plain = MakeLedgerRow("run", *p.phone, *p.lte, *p.world, u);
    REQUIRE(account.rows().size() == 3);
    const LedgerRow& row = account.rows()[0];
    CHECK(row.client_id == 7);
    CHECK(row.device == "phone-low");
    CHECK(row.compute_j == plain.compute_j);
    CHECK(row.radio_j == plain.radio_j);
    CHECK(row.gco2e == plain.gco2e);
    CHECK(account.rows()[2].bytes_up == 0);
    CHECK(account.rows()[2].outcome == ClientOutcome::kDropped);
    const RoundRecord& rec = account.record();
    CHECK(rec.round == 3);
    CHECK(rec.utc_hour == 18.5);
    CHECK(rec.selected == 3);
    CHECK(rec.completed == 1);
    CHECK(rec.stragglers == 1);
    CHECK(rec.bytes_up == 6000);
    CHECK(rec.bytes_down == 150000);
    double j = 0;
    for (const LedgerRow& x : account.rows()) j += x.compute_j;
    CHECK(rec.joules_compute == j);
  }

  TEST_CASE("one reader for the run keys: renamed keys move with a warning, run.toml round-trips") {
    auto t = ParseTomlWithOverrides("seed = 9\n[run]\nround_interval_s = 30\n[data]\neval_every = 5\n", "x", {});
    REQUIRE(t.ok());
    std::vector<std::string> warnings;
    REQUIRE(RenameDeprecatedKeys(*t, warnings).ok());
    CHECK(warnings.size() == 2);
    CHECK_FALSE(t->contains("run"));
    ConfigReader r(*t);
    RunSettings s;
    REQUIRE(ReadRunSettings(r, s).ok());
    r.CheckUnknown();
    CHECK_FALSE(r.error().has_value());
    CHECK(s.seed == 9);
    CHECK(s.round_interval_s == 30);
    CHECK(s.eval_every == 5);
    CHECK(s.builds_version_one());
    CHECK(s.uses_residuals());
    // The effective configuration written as TOML reads back to the same settings.
    auto again = ParseTomlWithOverrides(TomlText(r.effective()), "run.toml", {});
    REQUIRE(again.ok());
    ConfigReader r2(*again);
    RunSettings s2;
    REQUIRE(ReadRunSettings(r2, s2).ok());
    CHECK(r2.flat() == r.flat());

    auto zero = ParseTomlWithOverrides("[eval]\nevery = 0\n", "x", {});
    REQUIRE(zero.ok());
    ConfigReader r3(*zero);
    RunSettings s3;
    CHECK_FALSE(ReadRunSettings(r3, s3).ok());
  }
}

}  // namespace frugal
