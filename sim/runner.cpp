#include "frugal/sim/runner.h"

#include <time.h>
#include <unistd.h>

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <numeric>
#include <thread>

#include "frugal/core/random.h"
#include "frugal/core/streams.h"
#include "frugal/data/dataset.h"
#include "frugal/energy/grid_curves.h"
#include "frugal/energy/model.h"
#include "frugal/energy/profiles.h"
#include "frugal/model/model.h"
#include "frugal/model/release_models.h"
#include "frugal/model/prune.h"
#include "frugal/codec/ring_quant.h"
#include "frugal/codec/shared_support.h"
#include "frugal/codec/zero_set.h"
#include "frugal/privacy/identity.h"
#include "frugal/privacy/secure_local_round.h"
#include "frugal/privacy/secure_round.h"
#include "frugal/round/client_task.h"
#include "frugal/round/server_defense.h"
#include "frugal/round/engine.h"
#include "frugal/round/lean_round.h"
#include "frugal/round/accounting.h"
#include "frugal/round/model_payload.h"
#include "frugal/round/planner.h"
#include "frugal/round/representation.h"
#include "frugal/round/selection.h"
#include "frugal/report/run_dir.h"
#include "frugal/round/settings.h"
#include "frugal/round/step_history.h"
#include "frugal/sim/attack.h"
#include "frugal/sim/population.h"
#include "frugal/sim/progress.h"
#include "frugal/sim/residual_store.h"

namespace frugal::sim {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Runs fn(thread, i) for i in [0, n) on `threads` threads pulling indices.
template <typename Fn>
void ParallelFor(size_t n, size_t threads, Fn&& fn) {
  threads = std::max<size_t>(1, std::min(threads, n));
  std::atomic<size_t> next{0};
  auto work = [&](size_t t) {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(t, i);
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
}

// What a selected client produced, exchanged between ranks.
struct SlotResult {
  uint32_t client = 0;
  uint8_t status = 0;  // 0 ok, 1 dropped, 2 failed
  double flops = 0;
  double loss = 0;
  std::vector<uint8_t> update;
  std::string error;
};

void PutBytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

std::vector<uint8_t> Serialize(const std::vector<const SlotResult*>& results) {
  std::vector<uint8_t> out;
  for (const SlotResult* r : results) {
    const uint64_t un = r->update.size(), en = r->error.size();
    PutBytes(out, &r->client, sizeof r->client);
    PutBytes(out, &r->status, sizeof r->status);
    PutBytes(out, &r->flops, sizeof r->flops);
    PutBytes(out, &r->loss, sizeof r->loss);
    PutBytes(out, &un, sizeof un);
    PutBytes(out, r->update.data(), un);
    PutBytes(out, &en, sizeof en);
    PutBytes(out, r->error.data(), en);
  }
  return out;
}

// Ranks of one job exchange these among themselves only, so a failure here is a bug.
Result<std::vector<SlotResult>> Deserialize(const std::vector<uint8_t>& in) {
  std::vector<SlotResult> out;
  size_t pos = 0;
  auto get = [&](void* p, size_t n) {
    if (in.size() - pos < n) return false;
    std::memcpy(p, in.data() + pos, n);
    pos += n;
    return true;
  };
  while (pos < in.size()) {
    SlotResult r;
    uint64_t un = 0, en = 0;
    bool ok = get(&r.client, sizeof r.client) && get(&r.status, sizeof r.status) && get(&r.flops, sizeof r.flops) &&
              get(&r.loss, sizeof r.loss) && get(&un, sizeof un) && un <= in.size() - pos;
    if (ok) {
      r.update.assign(in.begin() + pos, in.begin() + pos + un);
      pos += un;
      ok = get(&en, sizeof en) && en <= in.size() - pos;
    }
    if (!ok) return InternalError("corrupt round exchange between simulator ranks");
    r.error.assign(reinterpret_cast<const char*>(in.data() + pos), en);
    pos += en;
    out.push_back(std::move(r));
  }
  return out;
}

std::string IsoTimestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string WithCommas(uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

// Evaluates on the test rows split across the workspaces' threads, combined in a fixed order.
Result<EvalResult> EvaluateOnThreads(const Model& model, std::span<const float> params, const Dataset& test,
                                     std::span<const uint32_t> rows,
                                     const std::vector<std::unique_ptr<ModelWorkspace>>& ws) {
  const size_t parts = std::min(ws.size(), rows.size());
  std::vector<EvalResult> ev(parts);
  std::vector<Status> status(parts);
  ParallelFor(parts, ws.size(), [&](size_t t, size_t p) {
    const size_t lo = rows.size() * p / parts, hi = rows.size() * (p + 1) / parts;
    auto e = Evaluate(model, params, test, rows.subspan(lo, hi - lo), *ws[t]);
    if (e.ok()) ev[p] = *e; else status[p] = e.error();
  });
  // Correct answers are counted, so the accuracy is the one a single
  // Evaluate over all rows gives (the coordinator's), however it was split.
  EvalResult all;
  uint64_t correct = 0;
  for (size_t p = 0; p < parts; ++p) {
    FRUGAL_RETURN_IF_ERROR(status[p]);
    correct += static_cast<uint64_t>(std::llround(ev[p].accuracy * static_cast<double>(ev[p].examples)));
    all.loss += ev[p].loss * static_cast<double>(ev[p].examples);
    all.examples += ev[p].examples;
    all.flops += ev[p].flops;
  }
  if (all.examples > 0) {
    all.accuracy = static_cast<double>(correct) / static_cast<double>(all.examples);
    all.loss /= static_cast<double>(all.examples);
  }
  return all;
}

// TrainClientDelta's contract with the app's trainer (RunOptions::app_train)
// in place of the core's: (trained - start) in `delta`, as the agent's
// embedding path builds it (client/task_loop.cpp, RunAppTask).
Result<TrainStats> AppTrainDelta(const AppTrainFn& app, const AppTrainInput& in, std::span<const float> start,
                                 std::vector<float>& delta) {
  delta.assign(start.begin(), start.end());
  FRUGAL_ASSIGN_OR_RETURN(TrainStats stats, app(in, delta));
  for (size_t i = 0; i < delta.size(); ++i) {
    if (!std::isfinite(delta[i])) {
      return InvalidArgumentError("the app's trainer left parameter " + std::to_string(i) + " non-finite");
    }
    delta[i] -= start[i];
  }
  if (!std::isfinite(stats.flops) || stats.flops < 0) stats.flops = 0;
  return stats;
}

}  // namespace

double MeasureGemmGflops(int n, double min_seconds) {
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n), c(n, n);
  c.noalias() = a * b;  // warm-up
  int reps = 0;
  const auto t0 = Clock::now();
  do {
    c.noalias() = a * b;
    ++reps;
  } while (Since(t0) < min_seconds);
  const double secs = Since(t0);
  volatile float sink = c(0, 0);
  (void)sink;
  return 2.0 * n * n * static_cast<double>(n) * reps / secs / 1e9;
}

namespace {

// A client's copy is its last full download (its base) plus every step
// since, applied in order. Each base is kept advanced to the current
// version, which is exactly what every client holding it has after its
// chain download; clients never need a copy of their own.
struct Base {
  std::vector<float> model;
  uint64_t holders = 0;
};

// One selected client's download: the payload and whether it is a full model.
struct Download {
  std::shared_ptr<const std::vector<uint8_t>> payload;
  bool full = false;
  uint64_t guide_bytes = 0;  // secure.guided: the support guide sent with the task (0: derived by the client)
};

// The virtual clock's verdict on a round: who counted, and when it closed.
struct Timing {
  std::vector<bool> accepted;    // by slot
  std::vector<double> t_down, t_comp;  // by slot, seconds
  uint32_t accepted_count = 0;
  double close_s = 0;
};

// One simulated run: Create() sets it up, Step() runs one round, Finish()
// writes the summary and the run directory. The round's planning, accounting
// and files are the core's (RoundPlanner, RoundAccount, WriteRunDirectory),
// exactly as frugal-coordinator uses them; this class only supplies the
// virtual clock and the thread pool.
class Simulation {
 public:
  static Result<std::unique_ptr<Simulation>> Create(const SimConfig& cfg, const RunOptions& opts);
  Status Step(uint32_t round);
  Result<RunResult> Finish();
  // The run ended before its configured rounds (privacy.target_epsilon).
  bool stopped() const { return !stop_reason_.empty(); }

 private:
  Simulation(const SimConfig& cfg, const RunOptions& opts) : cfg_(cfg), opts_(opts) {}
  Status SetUp();
  double RoundUtcHour(uint32_t round) const;
  std::vector<Candidate> Candidates(uint32_t round, double utc_hour) const;
  void AddPrivacy(RunSummary& sum) const;
  double ShiftRound(uint32_t round, double utc_hour);
  Result<std::vector<uint32_t>> Plan(uint32_t round, double utc_hour);
  Result<std::vector<Download>> Downloads(std::span<const uint32_t> selected, uint32_t version);
  std::vector<SlotResult> Train(uint32_t round, std::span<const uint32_t> selected, std::span<const Download> downloads,
                                uint32_t version);
  bool Dropped(uint32_t round, uint32_t id, double* fraction) const;
  bool IsAttacker(uint32_t c) const { return !attackers_.empty() && attackers_[c]; }
  void PoisonDelta(uint32_t round, uint32_t id, std::span<float> delta) const;
  // The sub-network client c trains ([widths], the core's LeanRound), or null for the whole model.
  const NestedNetwork* NestedFor(uint32_t c) const { return lean_.NestedFor(pop_->device(c).id); }
  Status EncodeUpdate(size_t thread, uint32_t c, std::span<const float> delta, SlotResult& r,
                      const NestedNetwork* nested = nullptr);
  void OmniscientAttack(std::span<const uint32_t> selected, std::span<const size_t> mine,
                        std::vector<std::vector<float>>& held, const std::vector<uint8_t>& pending,
                        std::vector<SlotResult>& results);
  // alie_flanders: how far, in standard deviations of the round's senders,
  // the attackers' update sits from their mean, coordinate by coordinate.
  void RecordFlandersShift(const DeltaMoments& senders, double z);
  Result<std::vector<SlotResult>> Exchange(std::vector<SlotResult> local);
  Result<Timing> Schedule(std::span<const uint32_t> selected, std::span<const Download> downloads,
                       const std::map<uint32_t, SlotResult*>& by_client) const;
  Status AdvanceBases(std::span<const uint32_t> selected, std::span<const Download> downloads, uint32_t version,
                      const RoundOutcome& outcome);
  RoundAccount Account(uint32_t round, double utc_hour, std::span<const uint32_t> selected,
                       std::span<const Download> downloads, const std::map<uint32_t, SlotResult*>& by_client,
                       const Timing& timing);
  void AddNotes(RunSummary& sum) const;
  void AddCarbonFigures(RunSummary& sum) const;
  std::vector<RosterEntry> Roster() const;
  // Secure pipeline: SecAgg+ stages 1-2 for the selected clients before they
  // train, each client's ring input and masked message, then unmasking.
  Status StartSecureRound(uint32_t round, std::span<const uint32_t> selected, std::span<Download> downloads);
  Status EncodeSecureInput(size_t thread, uint32_t c, std::span<const float> delta, SlotResult& r);
  Status FinishSecureRound(uint32_t round, std::span<const uint32_t> selected, Timing& timing);
  Status CountSecureWraps(std::span<const uint32_t> survivors);
  // --dump-ring-sums: the round's true sums with the server's side information,
  // and the round's broadcast step (docs/benchmarks.md, "Seventeenth session").
  Status DumpRingSums(uint32_t round, std::span<const uint32_t> survivors);
  Status DumpBroadcastStep(uint32_t round, uint32_t new_version);
  double SecureClientFlops(uint32_t c) const;
  // Structured pruning ([prune]) after `round`, when the schedule says so.
  Status Prune(uint32_t round);

  const SimConfig& cfg_;
  const RunOptions& opts_;
  std::unique_ptr<Communicator> local_comm_;
  Communicator* comm_ = nullptr;
  bool leader_ = true;
  size_t threads_ = 1;
  Clock::time_point run_start_ = Clock::now();
  double gemm_gflops_ = 0;

  Dataset train_, test_;
  std::unique_ptr<Model> model_;
  EnergyProfiles profiles_;
  std::optional<Population> pop_;
  std::unique_ptr<RoundEngine> engine_;
  std::unique_ptr<ResidualStore> residuals_;
  bool bf16_residuals_ = false;
  std::unique_ptr<RoundPlanner> planner_;
  std::vector<std::unique_ptr<ModelWorkspace>> ws_;
  std::vector<std::vector<float>> scratch_, resid_buf_;
  std::vector<std::vector<uint32_t>> example_buf_;
  std::vector<uint32_t> test_idx_;
  std::vector<bool> attackers_;        // by population index; empty without attack.kind
  Dataset backdoor_test_;              // triggered test images (attack.kind = "backdoor")
  std::vector<uint32_t> backdoor_idx_;
  double last_backdoor_ = -1;
  double last_int8_ = -1;  // eval.int8: the released model's int8 accuracy (-1: not measured)
  // Differential privacy: the engine's configuration (its noise derived from
  // privacy.target_epsilon when not given), the last round's candidates (the
  // sampling rate's denominator), (ε, δ) so far, and why the run stopped.
  EngineConfig engine_cfg_;
  uint64_t last_eligible_ = 0;
  double dp_epsilon_ = -1, dp_delta_ = -1;
  std::string stop_reason_;
  // Rounds whose robust rule ran below its bound (multi_krum, bulyan), and the first one's sentence.
  uint32_t robust_shortfall_rounds_ = 0;
  std::string robust_shortfall_first_;
  uint64_t diverged_ = 0;  // tasks whose training an attack made non-finite (every rank's)
  // alie_flanders: per attacked round, z, the 10th, 50th and 90th percentiles
  // over coordinates of z * sqrt(std) / std (coordinates where std > 0), and std's median.
  std::vector<std::array<double, 5>> flanders_shift_;
  // The server's work on its trusted set (server.robust = "fltrust", the trigger scan); null: none.
  std::unique_ptr<ServerDefense> defense_;
  std::map<uint32_t, Base> bases_;
  // [prune] and [widths] (the core's round-level state), and the residual store's
  // settings (a shape change moves every residual into a store of the new dimension).
  LeanRound lean_;
  std::string spill_path_;
  size_t residual_budget_ = 0;
  std::unique_ptr<ProgressBar> bar_;

  EnergyLedger ledger_{""};
  std::vector<RoundRecord> rounds_;
  EvalResult last_eval_;
  double clock_s_ = 0;
  double shift_wait_s_ = 0;                 // virtual seconds rounds waited for cleaner hours (carbon.shift_slack_h)
  std::vector<double> round_end_clock_s_;  // the virtual clock when each round closed, waits included
  double train_wall_ = 0;
  double train_flops_ = 0;    // every selected client's training, stragglers' and drop-outs' included
  double accepted_flops_ = 0;  // the training behind the updates that counted
  uint64_t updates_total_ = 0;
  // Secure pipeline: the open round's protocol run, its shared support, each
  // selected client's position on the graph, and the run's protocol totals.
  std::unique_ptr<privacy::LocalSecureRound> secure_;
  std::optional<privacy::SimulatedIdentityAuthority> sim_ca_;  // secure.identity = "ca"
  std::vector<uint32_t> secure_support_;
  std::map<uint32_t, uint32_t> secure_position_;  // population index -> position
  uint64_t secure_bytes_up_ = 0, secure_bytes_down_ = 0, secure_failed_rounds_ = 0;
  // secure.guided > 0: the round's support guide as sent with each task (its
  // encoded size goes on each selected client's downlink), and the run's total.
  uint64_t secure_guide_bytes_total_ = 0, secure_guides_derived_ = 0;
  // secure.derive_guide: per client, the version from which it holds every
  // broadcast step up to its model's (HistoryAfterDownload; the simulated
  // client keeps secure.guide_rounds of them). Only the version: the steps
  // themselves are the engine's.
  std::vector<uint32_t> history_from_;
  double secure_client_cpu_s_ = 0, secure_server_cpu_s_ = 0;
  // Each position's ring input of the open round (the simulator holds them all,
  // SecAgg+'s server does not), kept for rings of at most 16 bits, 2 bytes an
  // entry: the survivors' true sum against the ring's centered range
  // (RingWrapCounter) goes to rounds.csv's ring_wraps columns. Wider rings
  // (distributed DP's) cannot wrap and are not counted.
  std::vector<std::vector<uint16_t>> secure_inputs_;
  RingWrapCount round_wraps_{}, run_wraps_{};
  // secure.guided > 0: which support entries of the open round are guided (1)
  // or rand-k (0), and the run's counts over the guided ones alone.
  std::vector<uint8_t> secure_guided_entry_;
  RingWrapCount run_wraps_guided_{};
  bool round_wraps_counted_ = false;
  std::ofstream ring_dump_;  // --dump-ring-sums
};

Result<std::unique_ptr<Simulation>> Simulation::Create(const SimConfig& cfg, const RunOptions& opts) {
  std::unique_ptr<Simulation> sim(new Simulation(cfg, opts));
  FRUGAL_RETURN_IF_ERROR(sim->SetUp());
  return sim;
}

Status Simulation::SetUp() {
  comm_ = opts_.comm;
  if (comm_ == nullptr) {
    local_comm_ = MakeLocalCommunicator();
    comm_ = local_comm_.get();
  }
  leader_ = comm_->rank() == 0;
  threads_ = cfg_.threads != 0 ? cfg_.threads : std::max(1u, std::thread::hardware_concurrency());
  if (cfg_.pipeline == Pipeline::kSecure && comm_->size() > 1) {
    return InvalidArgumentError("pipeline = \"secure\" runs on one simulator process (the protocol's server is "
                                "one party); run it without MPI ranks");
  }
  if (cfg_.pipeline == Pipeline::kSecure && !cfg_.engine.secure.run_protocol && leader_) {
    std::fprintf(stderr, "frugal-sim: secure.run_protocol = false: the SecAgg+ protocol is not run (each round sums "
                         "the survivors' ring inputs directly, as unmasking would); this run measures accuracy only, "
                         "and the protocol's bytes and CPU are not on the ledger\n");
  }
  if (opts_.dump_ring_sums && leader_) {
    if (cfg_.pipeline != Pipeline::kSecure || opts_.out_dir.empty()) {
      return InvalidArgumentError("--dump-ring-sums needs pipeline = \"secure\" and a run directory (--out)");
    }
    std::filesystem::create_directories(opts_.out_dir);
    ring_dump_.open(std::filesystem::path(opts_.out_dir) / "ring_sums.bin", std::ios::binary);
    if (!ring_dump_) return UnavailableError("--dump-ring-sums: cannot open " + opts_.out_dir + "/ring_sums.bin");
  }
  if (cfg_.federated_eval_every > 0) {
    return InvalidArgumentError("eval.federated_every: federated evaluation is not simulated yet (the service runs "
                                "it); set it to 0");
  }
  gemm_gflops_ = opts_.gemm_baseline ? MeasureGemmGflops(1024, 2.0) : 0.0;

  const std::string dir = cfg_.data_dir.empty() ? std::string(FRUGAL_FMNIST_DIR) : cfg_.data_dir;
  FRUGAL_ASSIGN_OR_RETURN(train_, LoadFashionMnist(Split::kTrain, dir));
  FRUGAL_ASSIGN_OR_RETURN(test_, LoadFashionMnist(Split::kTest, dir));
  FRUGAL_ASSIGN_OR_RETURN(model_, MakeModel(cfg_.model, train_.num_features, train_.num_classes));
  FRUGAL_ASSIGN_OR_RETURN(profiles_, cfg_.profiles.empty() ? EnergyProfiles::LoadDefault()
                                                           : EnergyProfiles::LoadDefaultWithOverride(cfg_.profiles));
  {
    // Hourly curves before the population takes pointers to the regions.
    std::vector<HourlyCurve> curves;
    if (!cfg_.carbon.grid_csv.empty()) {
      FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadTextFile(cfg_.carbon.grid_csv));
      FRUGAL_ASSIGN_OR_RETURN(curves, ParseHourlyIntensityCsv(text, cfg_.carbon.grid_csv));
    }
    FRUGAL_RETURN_IF_ERROR(
        ApplyHourlyCurves(profiles_, cfg_.carbon.hourly, cfg_.carbon.day_of_year, curves, cfg_.carbon.grid_csv));
  }
  FRUGAL_ASSIGN_OR_RETURN(pop_, Population::Create(cfg_, train_, profiles_));
  const size_t dim = model_->num_params();

  std::vector<float> init(dim);
  InitialModel(*model_, cfg_.model_init, cfg_.seed, init);
  engine_cfg_ = cfg_.engine;
  // The planned sampling rate: the selected count over the whole population.
  FRUGAL_RETURN_IF_ERROR(DeriveNoiseForPlan(engine_cfg_, cfg_.plan, pop_->size(), cfg_.rounds, dim));
  engine_ = std::make_unique<RoundEngine>(std::move(init), engine_cfg_);
  planner_ = std::make_unique<RoundPlanner>(cfg_, model_->flops_per_example());
  FRUGAL_ASSIGN_OR_RETURN(defense_, ServerDefense::Create(cfg_, train_.size()));

  if (!opts_.out_dir.empty() && leader_) std::filesystem::create_directories(opts_.out_dir);
  const std::filesystem::path spill_dir = !cfg_.spill_dir.empty()   ? std::filesystem::path(cfg_.spill_dir)
                                          : !opts_.out_dir.empty() ? std::filesystem::path(opts_.out_dir)
                                                                   : std::filesystem::temp_directory_path();
  std::error_code ec;
  std::filesystem::create_directories(spill_dir, ec);
  // The slot file exists only while residuals spill; ResidualStore deletes it.
  const std::string spill = (spill_dir / ("frugal-residuals." + std::to_string(comm_->rank()) + "." +
                                          std::to_string(::getpid()) + ".bin")).string();
  // Where the population's fp32 residuals could not all stay in the memory
  // budget (fleet scale), they are kept as bf16: half the memory and spill
  // traffic. Smaller populations keep them exactly, as a device does.
  const auto residual_budget = static_cast<size_t>(cfg_.residual_memory_mb * 1024 * 1024);
  bf16_residuals_ = static_cast<double>(pop_->size()) * static_cast<double>(dim) * sizeof(float) >
                    static_cast<double>(residual_budget);
  residuals_ = std::make_unique<ResidualStore>(dim, residual_budget, spill,
                                               bf16_residuals_ ? ResidualPrecision::kBf16 : ResidualPrecision::kFp32);
  spill_path_ = spill;
  residual_budget_ = residual_budget;
  FRUGAL_ASSIGN_OR_RETURN(const auto widths, WidthsByProfileId(cfg_.widths, profiles_));
  FRUGAL_ASSIGN_OR_RETURN(lean_, LeanRound::Create(*model_, cfg_.prune, widths, cfg_.pipeline, cfg_.widths_rolling));
  planner_->SetFlopsPerExample(model_->flops_per_example(), lean_.TrainFlopsByDevice());
  if (lean_.has_widths() && (cfg_.attack.active() || opts_.app_train)) {
    return InvalidArgumentError("[widths] is not built for attacks or an app's trainer");
  }

  for (size_t t = 0; t < threads_; ++t) ws_.push_back(model_->MakeWorkspace());
  scratch_.resize(threads_);
  resid_buf_.resize(threads_);
  example_buf_.resize(threads_);
  const uint32_t n_eval = cfg_.eval_examples != 0 && cfg_.eval_examples < test_.size()
                              ? cfg_.eval_examples
                              : static_cast<uint32_t>(test_.size());
  test_idx_.resize(n_eval);
  for (uint32_t i = 0; i < n_eval; ++i) test_idx_[i] = i;

  if (cfg_.attack.active()) {
    attackers_ = ChooseAttackers(pop_->size(), cfg_.attack.fraction, StreamSeed(cfg_.seed, SeedStream::kAttack));
  }
  if (cfg_.attack.kind == AttackKind::kBackdoor) {
    FRUGAL_ASSIGN_OR_RETURN(backdoor_test_, TriggeredTestSet(test_, test_idx_, cfg_.attack.target_label));
    backdoor_idx_.resize(backdoor_test_.size());
    std::iota(backdoor_idx_.begin(), backdoor_idx_.end(), 0u);
  }

  if (cfg_.builds_version_one()) {
    // Version 1 is made from the seed (InitialModel): every client can make it locally, so it
    // holds version 1 from the start and its first download is a chain.
    bases_[1] = Base{std::vector<float>(engine_->global_model().begin(), engine_->global_model().end()), pop_->size()};
    for (size_t i = 0; i < pop_->size(); ++i) pop_->SetHeld(i, 1, 1);
  }
  ledger_ = EnergyLedger(cfg_.run_id);
  bar_ = std::make_unique<ProgressBar>(opts_.progress && leader_, cfg_.rounds);
  return OkStatus();
}

double Simulation::RoundUtcHour(uint32_t round) const {
  if (round - 1 < cfg_.replay_utc_hours.size()) return cfg_.replay_utc_hours[round - 1];
  return cfg_.start_utc_hour + clock_s_ / 3600.0;
}

// The clients available at `utc_hour` in `round`, as the core's planner sees them.
std::vector<Candidate> Simulation::Candidates(uint32_t round, double utc_hour) const {
  const std::vector<uint32_t> available = pop_->Available(round, utc_hour);
  std::vector<Candidate> candidates(available.size());
  for (size_t i = 0; i < available.size(); ++i) {
    const uint32_t c = available[i];
    const double local = utc_hour + pop_->region(c).utc_offset_hours;
    const auto hour = static_cast<size_t>(std::floor(std::fmod(std::fmod(local, 24.0) + 24.0, 24.0))) % 24;
    candidates[i] = Candidate{pop_->id(c), &pop_->device(c), &pop_->radio(c), &pop_->region(c), pop_->NumExamples(c),
                              Pattern(pop_->traits(c).availability).charging[hour]};
  }
  return candidates;
}

// Time shifting on the virtual clock: the round due now waits as long as the
// core's planner says (0 unless carbon.shift_slack_h); a replay runs each round
// at its recorded hour and never waits again. Returns the round's UTC hour.
double Simulation::ShiftRound(uint32_t round, double utc_hour) {
  if (!cfg_.carbon.shifts() || round - 1 < cfg_.replay_utc_hours.size()) return utc_hour;
  const double wait_h = planner_->ShiftDelayHours(Candidates(round, utc_hour), utc_hour);
  if (!(wait_h > 0)) return utc_hour;
  clock_s_ += wait_h * 3600.0;
  shift_wait_s_ += wait_h * 3600.0;
  return RoundUtcHour(round);
}

// Available clients, chosen by the core's planner; returns population indices.
Result<std::vector<uint32_t>> Simulation::Plan(uint32_t round, double utc_hour) {
  const std::vector<Candidate> candidates = Candidates(round, utc_hour);
  uint64_t first_payload = 0;
  if (cfg_.plan.selection != SelectionPolicy::kUniform && rounds_.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(auto first, engine_->ModelPayloadFor(pop_->held_version(0)));
    first_payload = first->size();
  }
  std::vector<uint32_t> selected = planner_->Select(round, candidates, utc_hour, first_payload);
  last_eligible_ = candidates.size();
  for (uint32_t& id : selected) id = static_cast<uint32_t>(pop_->IndexOf(id));
  return selected;
}

// One payload per distinct held version, shared by the clients holding it.
Result<std::vector<Download>> Simulation::Downloads(std::span<const uint32_t> selected, uint32_t version) {
  const auto dim = static_cast<uint32_t>(model_->num_params());
  std::vector<Download> out(selected.size());
  for (size_t s = 0; s < selected.size(); ++s) {
    // Merged format version 4 needs the client's kept steps (tracked as in StartSecureRound).
    const uint32_t history_from = selected[s] < history_from_.size() ? history_from_[selected[s]] : 0;
    FRUGAL_ASSIGN_OR_RETURN(out[s].payload, engine_->ModelPayloadFor(pop_->held_version(selected[s]), history_from));
    std::vector<std::span<const uint8_t>> pieces;
    FRUGAL_ASSIGN_OR_RETURN(ModelPayloadHeader h, ParseModelPayload(*out[s].payload, dim, &pieces));
    out[s].full = h.kind == ModelPayloadKind::kFull;
    // A client with no base (the dense pipeline's) that is up to date, after a
    // round that changed nothing, holds what the current full model decodes to.
    if ((out[s].full || pop_->base_version(selected[s]) == 0) && !bases_.contains(version)) {
      std::shared_ptr<const std::vector<uint8_t>> full = out[s].payload;
      if (!out[s].full) {
        FRUGAL_ASSIGN_OR_RETURN(full, engine_->ModelPayloadFor(0));
      }
      std::vector<float> copy;
      FRUGAL_RETURN_IF_ERROR(ApplyModelPayload(*full, 0, copy, dim).status());
      bases_[version] = Base{std::move(copy), 0};
    }
  }
  return out;
}

// Whether `id` vanishes mid-task in `round`, and after what fraction of its
// training. Seeded by round and client, so every rank knows of every client.
bool Simulation::Dropped(uint32_t round, uint32_t id, double* fraction) const {
  Rng drop_rng(RoundClientSeed(cfg_.seed, SeedStream::kDropout, round, id));
  const bool dropped = cfg_.dropout > 0 && drop_rng.Uniform() < cfg_.dropout;
  *fraction = drop_rng.Uniform();
  return dropped;
}

// An attacker's replacement of its own delta (the attacks that need no one else's).
void Simulation::PoisonDelta(uint32_t round, uint32_t id, std::span<float> delta) const {
  const AttackConfig& a = cfg_.attack;
  switch (a.kind) {
    case AttackKind::kSignFlip: SignFlip(delta, a.scale); break;
    case AttackKind::kScaling: ScaleDelta(delta, a.scale); break;
    case AttackKind::kGaussian:
      GaussianDelta(delta, a.sigma, RoundClientSeed(cfg_.seed, SeedStream::kAttack, round, id));
      break;
    case AttackKind::kBackdoor:
      if (a.scale != 1) ScaleDelta(delta, a.scale);
      break;
    default: break;
  }
}

// The uplink codec with the client's error feedback: the bytes it sends.
Status Simulation::EncodeUpdate(size_t thread, uint32_t c, std::span<const float> delta, SlotResult& r,
                                const NestedNetwork* nested) {
  if (cfg_.pipeline == Pipeline::kSecure) return EncodeSecureInput(thread, c, delta, r);
  std::span<float> resid;
  std::vector<float> sub_resid;
  if (cfg_.uses_residuals()) {
    resid_buf_[thread].resize(model_->num_params());
    FRUGAL_RETURN_IF_ERROR(residuals_->Load(c, resid_buf_[thread]));
    resid = resid_buf_[thread];
    if (nested != nullptr) {
      // A narrow client's residual covers its sub-network; the rest keeps what it held.
      sub_resid = NarrowResidual(nested->map, resid);
      resid = sub_resid;
    }
  }
  FRUGAL_ASSIGN_OR_RETURN(r.update, EncodeUplink(delta, cfg_.task.uplink, resid));
  if (cfg_.uses_residuals()) {
    if (nested != nullptr) WidenResidual(nested->map, sub_resid, resid_buf_[thread]);
    FRUGAL_RETURN_IF_ERROR(residuals_->Store(c, resid_buf_[thread]));
  }
  return OkStatus();
}

// Stages 1-2 of SecAgg+ for every selected client (a client that drops out
// mid-training has shared its keys by then), on positions drawn per round.
Status Simulation::StartSecureRound(uint32_t round, std::span<const uint32_t> selected,
                                    std::span<Download> downloads) {
  secure_.reset();
  secure_position_.clear();
  FRUGAL_ASSIGN_OR_RETURN(secure_support_, engine_->SecureSupport(round));
  if (cfg_.engine.secure.guided > 0) {
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> blocks, engine_->SecureSupportGuideBlocks());
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> sent,
                            EncodeSupportGuide(blocks, static_cast<uint32_t>(model_->num_params()),
                                               cfg_.engine.secure.guide_block));
    const bool track = cfg_.engine.secure.derive_guide || cfg_.engine.merge_version >= 4;
    if (track && history_from_.size() != pop_->size()) {
      // Version 1 from the seed: every client starts holding it with no steps behind it.
      history_from_.assign(pop_->size(), cfg_.builds_version_one() ? 1u : 0u);
    }
    for (size_t s = 0; s < selected.size(); ++s) {
      bool derived = false;
      if (track) {
        uint32_t& from = history_from_[selected[s]];
        from = HistoryAfterDownload(from, cfg_.engine.secure.guide_rounds, downloads[s].full, engine_->version());
        derived = engine_->ClientDerivesGuide(from);
      }
      downloads[s].guide_bytes = derived ? 0 : sent.size();
      secure_guide_bytes_total_ += downloads[s].guide_bytes;
      secure_guides_derived_ += derived ? 1 : 0;
    }
    secure_guided_entry_.assign(secure_support_.size(), 0);
    for (size_t j = 0; j < secure_support_.size(); ++j) {
      secure_guided_entry_[j] =
          std::binary_search(blocks.begin(), blocks.end(), secure_support_[j] / cfg_.engine.secure.guide_block) ? 1 : 0;
    }
  }
  std::vector<uint64_t> ids;
  for (uint32_t c : selected) ids.push_back(pop_->id(c));
  FRUGAL_ASSIGN_OR_RETURN(privacy::SecureRoundPlan plan,
                          privacy::PlanSecureRoundFor(cfg_.engine.secure, cfg_.seed, cfg_.seed, round, ids,
                                                      static_cast<uint32_t>(secure_support_.size())));
  for (size_t s = 0; s < selected.size(); ++s) secure_position_[selected[s]] = plan.positions[s];
  // secure.identity = "ca": each client's credential from the simulated CA
  // (the service's come from the fleet's CA files), by position.
  std::vector<privacy::SecureIdentity> identities;
  if (plan.config.identity && cfg_.engine.secure.run_protocol) {
    if (!sim_ca_) {
      FRUGAL_ASSIGN_OR_RETURN(sim_ca_, privacy::SimulatedIdentityAuthority::Create(cfg_.seed));
    }
    identities.resize(selected.size());
    for (size_t s = 0; s < selected.size(); ++s) {
      FRUGAL_ASSIGN_OR_RETURN(identities[plan.positions[s]], sim_ca_->Issue(ids[s]));
    }
  }
  secure_inputs_.assign(plan.config.clients, {});
  round_wraps_counted_ = false;
  FRUGAL_ASSIGN_OR_RETURN(secure_, privacy::LocalSecureRound::Start(plan.config, ThreadCpuSeconds,
                                                                     cfg_.engine.secure.run_protocol
                                                                         ? privacy::SecureProtocol::kRun
                                                                         : privacy::SecureProtocol::kSumOnly,
                                                                     std::move(identities)));
  return OkStatus();
}

// The client's error-feedback-corrected update on the round's support, in the
// ring, masked: r.update is the masked-input message exactly as sent.
Status Simulation::EncodeSecureInput(size_t thread, uint32_t c, std::span<const float> delta, SlotResult& r) {
  std::span<float> resid;
  if (cfg_.uses_residuals()) {
    resid_buf_[thread].resize(model_->num_params());
    FRUGAL_RETURN_IF_ERROR(residuals_->Load(c, resid_buf_[thread]));
    resid = resid_buf_[thread];
  }
  // Distributed DP: the engine's ring carries the clip and the noise; each
  // client's noise stream is keyed from the run's seed (reproducible).
  const privacy::NoiseKey noise_key =
      privacy::SeededNoiseKey(engine_cfg_.dp.noise_seed, pop_->id(c) + 1, engine_->round());
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint64_t> input,
                          privacy::SecureClientInput(delta, secure_support_, engine_->secure_config().ring, cfg_.seed,
                                                     engine_->round(), pop_->id(c), resid, &noise_key));
  FRUGAL_ASSIGN_OR_RETURN(r.update, secure_->MaskedInput(secure_position_.at(c), input));
  if (secure_->config().bits <= 16) {  // distinct positions: no race
    secure_inputs_.at(secure_position_.at(c)).assign(input.begin(), input.end());
  }
  if (cfg_.uses_residuals()) FRUGAL_RETURN_IF_ERROR(residuals_->Store(c, resid));
  return OkStatus();
}

// The protocol's CPU on a device: the seconds measured on this host's thread
// CPU clock, charged as that many seconds of the device's sustained compute.
double Simulation::SecureClientFlops(uint32_t c) const {
  const privacy::SecureClientCost& k = secure_->cost(secure_position_.at(c));
  return (k.setup_cpu_s + k.mask_cpu_s + k.unmask_cpu_s) * pop_->device(c).flops_per_s_fp32;
}

// Masked inputs that arrived in time reach the server, the rest dropped;
// survivors reveal shares, the server unmasks the sum and hands it to the
// engine. Too many drop-outs fail the round (the model stays as it was).
// The unmasking round trip adds its transfers and CPU to the virtual clock.
Status Simulation::FinishSecureRound(uint32_t round, std::span<const uint32_t> selected, Timing& timing) {
  std::vector<uint32_t> delivered;
  std::vector<uint64_t> ids;
  std::map<uint32_t, uint32_t> slot_of;
  for (size_t s = 0; s < selected.size(); ++s) {
    slot_of[secure_position_.at(selected[s])] = static_cast<uint32_t>(s);
    if (!timing.accepted[s]) continue;
    delivered.push_back(secure_position_.at(selected[s]));
  }
  std::sort(delivered.begin(), delivered.end());
  auto sum = secure_->Finish(delivered);
  if (!sum.ok()) {
    if (sum.error().code() != ErrorCode::kFailedPrecondition) return sum.error();
    ++secure_failed_rounds_;
    if (leader_) std::fprintf(stderr, "frugal-sim: %s\n", sum.error().message().c_str());
  } else {
    for (uint32_t u : sum->survivors) ids.push_back(pop_->id(selected[slot_of.at(u)]));
    FRUGAL_RETURN_IF_ERROR(engine_->IngestSecureSum(round, ids, sum->sum));
    FRUGAL_RETURN_IF_ERROR(CountSecureWraps(sum->survivors));
    if (ring_dump_.is_open()) FRUGAL_RETURN_IF_ERROR(DumpRingSums(round, sum->survivors));
  }
  double unmask_s = 0;
  for (size_t s = 0; s < selected.size(); ++s) {
    const uint32_t c = selected[s];
    const privacy::SecureClientCost& k = secure_->cost(secure_position_.at(c));
    secure_bytes_up_ += k.bytes_up;
    secure_bytes_down_ += k.bytes_down;
    secure_client_cpu_s_ += k.setup_cpu_s + k.mask_cpu_s + k.unmask_cpu_s;
    if (!timing.accepted[s]) continue;
    const uint64_t down = k.bytes_down - k.setup_bytes_down, up = k.bytes_up - k.setup_bytes_up - k.masked_bytes;
    unmask_s = std::max(unmask_s, TransferSeconds(pop_->radio(c), down, Direction::kDown) + k.unmask_cpu_s +
                                      TransferSeconds(pop_->radio(c), up, Direction::kUp));
  }
  secure_server_cpu_s_ += secure_->server_cpu_s();
  timing.close_s += unmask_s + secure_->server_unmask_cpu_s();
  return OkStatus();
}

// The survivors' true sum against the ring (RingWrapCounter): rings of at most
// 16 bits only, the others stay uncounted (-1 in rounds.csv).
Status Simulation::CountSecureWraps(std::span<const uint32_t> survivors) {
  round_wraps_counted_ = false;
  if (secure_->config().bits > 16) return OkStatus();
  FRUGAL_ASSIGN_OR_RETURN(RingWrapCounter counter, RingWrapCounter::Create(secure_->config().bits, secure_->config().length));
  std::vector<uint64_t> input;
  for (uint32_t u : survivors) {
    const std::vector<uint16_t>& in = secure_inputs_.at(u);
    input.assign(in.begin(), in.end());
    FRUGAL_RETURN_IF_ERROR(counter.Add(input));
  }
  round_wraps_ = counter.Count();
  round_wraps_counted_ = true;
  if (!secure_guided_entry_.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(RingWrapCount guided, counter.Count(secure_guided_entry_));
    run_wraps_guided_ += guided;
  }
  run_wraps_ += round_wraps_;
  return OkStatus();
}

namespace {
template <typename T>
void PutRaw(std::ofstream& out, const T& v) {
  out.write(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
void PutAll(std::ofstream& out, std::span<const T> v) {
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size_bytes()));
}
}  // namespace

// Record 'S' (host byte order, little-endian here): round u32, entries n u32,
// survivors u32, then n coordinates (u32), n true sums (i16: the survivors'
// levels, each read as its centered residue, summed), n guided flags (u8),
// n server residuals at the coordinates (f32, the engine's state when the sum
// arrives: after the previous round's close).
Status Simulation::DumpRingSums(uint32_t round, std::span<const uint32_t> survivors) {
  const int bits = secure_->config().bits;
  if (bits > 16) return OkStatus();
  const size_t n = secure_support_.size();
  const int64_t half = int64_t{1} << (bits - 1);
  std::vector<int16_t> sums(n, 0);
  for (uint32_t u : survivors) {
    const std::vector<uint16_t>& in = secure_inputs_.at(u);
    for (size_t j = 0; j < n; ++j) {
      const auto v = static_cast<int64_t>(in[j]);
      sums[j] = static_cast<int16_t>(sums[j] + (v >= half ? v - 2 * half : v));
    }
  }
  std::vector<uint8_t> guided = secure_guided_entry_;
  guided.resize(n, 0);
  std::vector<float> resid(n, 0.0f);
  const std::span<const float> server = engine_->server_residual();
  for (size_t j = 0; j < n && !server.empty(); ++j) resid[j] = server[secure_support_[j]];
  ring_dump_.put('S');
  PutRaw(ring_dump_, round);
  PutRaw(ring_dump_, static_cast<uint32_t>(n));
  PutRaw(ring_dump_, static_cast<uint32_t>(survivors.size()));
  PutAll(ring_dump_, std::span<const uint32_t>(secure_support_));
  PutAll(ring_dump_, std::span<const int16_t>(sums));
  PutAll(ring_dump_, std::span<const uint8_t>(guided));
  PutAll(ring_dump_, std::span<const float>(resid));
  return ring_dump_ ? OkStatus() : UnavailableError("--dump-ring-sums: write failed");
}

// Record 'B': round u32, m u32, then the step's m coordinates (u32) and values (f32).
Status Simulation::DumpBroadcastStep(uint32_t round, uint32_t new_version) {
  FRUGAL_ASSIGN_OR_RETURN(SparseUpdate step,
                          DecodeBroadcastStep(engine_->StepPayload(new_version), static_cast<uint32_t>(engine_->dim())));
  ring_dump_.put('B');
  PutRaw(ring_dump_, round);
  PutRaw(ring_dump_, static_cast<uint32_t>(step.indices.size()));
  PutAll(ring_dump_, std::span<const uint32_t>(step.indices));
  PutAll(ring_dump_, std::span<const float>(step.values));
  ring_dump_.flush();
  return ring_dump_ ? OkStatus() : UnavailableError("--dump-ring-sums: write failed");
}

// This rank's selected clients train on the thread pool. An attacker trains
// too (on its poisoned copy for a data attack), so its energy and its update's
// size are those of a real client; a model attack then replaces its delta
// before the same uplink codec encodes it.
std::vector<SlotResult> Simulation::Train(uint32_t round, std::span<const uint32_t> selected,
                                          std::span<const Download> downloads, uint32_t version) {
  std::vector<size_t> mine;
  for (size_t s = 0; s < selected.size(); ++s) {
    if (static_cast<int>(pop_->id(selected[s]) % static_cast<uint32_t>(comm_->size())) == comm_->rank()) {
      mine.push_back(s);
    }
  }
  std::vector<SlotResult> results(mine.size());
  std::atomic<size_t> done{0};
  const AttackConfig& attack = cfg_.attack;
  // ALIE and IPM need the round's honest deltas: every sender's is kept, and
  // the attackers encode once all are known.
  const bool hold = attack.needs_honest_deltas();
  std::vector<std::vector<float>> held(hold ? mine.size() : 0);
  std::vector<uint8_t> pending(mine.size(), 0);  // not vector<bool>: threads write neighbouring entries
  ParallelFor(mine.size(), threads_, [&](size_t t, size_t k) {
    const size_t s = mine[k];
    const uint32_t c = selected[s];
    const uint32_t id = pop_->id(c);
    SlotResult& r = results[k];
    r.client = id;
    auto fail = [&](const Error& e) {
      r.status = 2;
      r.error = e.ToString();
    };
    // Before attack.start_round an attacker trains and sends like any client (a warm-up).
    const bool attacker = IsAttacker(c) && round >= attack.start_round;
    // The copy the client trains from, after its download (see Base).
    const uint32_t base = downloads[s].full || pop_->base_version(c) == 0 ? version : pop_->base_version(c);
    const NestedNetwork* nested = NestedFor(c);
    const Model& model = nested != nullptr ? *nested->model : *model_;
    // A narrow client trains and sends its nested sub-network ([widths]); the
    // thread's workspace serves it too (an MLP workspace grows to any MLP of that depth).
    const std::vector<float> sub_start = nested != nullptr ? ApplyParamMap(nested->map, bases_.at(base).model)
                                                           : std::vector<float>{};
    const std::vector<float>& start = nested != nullptr ? sub_start : bases_.at(base).model;
    std::span<const uint32_t> examples = pop_->Examples(c, example_buf_[t]);
    const Dataset* data = &train_;
    Dataset poisoned;
    std::vector<uint32_t> poisoned_rows;
    if (attacker && attack.poisons_data()) {
      // A poisoned copy of this client's examples only; the same ones every round.
      auto copy = PoisonedCopy(train_, examples, attack, StreamSeed(cfg_.seed, SeedStream::kAttack, id));
      if (!copy.ok()) return fail(copy.error());
      poisoned = std::move(*copy);
      poisoned_rows.resize(poisoned.size());
      std::iota(poisoned_rows.begin(), poisoned_rows.end(), 0u);
      data = &poisoned;
      examples = poisoned_rows;
    }
    TrainConfig tc = cfg_.task.train;
    tc.seed = RoundClientSeed(cfg_.seed, SeedStream::kTrain, round, id);
    double fraction = 0;
    const bool dropped = Dropped(round, id, &fraction);
    auto stats = opts_.app_train ? AppTrainDelta(opts_.app_train, AppTrainInput{id, round, data, examples, &tc}, start,
                                                 scratch_[t])
                                 : TrainClientDelta(model, start, *data, examples, tc, *ws_[t], scratch_[t]);
    if (!stats.ok() && attack.active() && stats.error().code() == ErrorCode::kInvalidArgument) {
      // An attack can drive the global model where training no longer has a
      // finite loss. The device then fails its task and sends nothing, like a
      // drop-out; the run goes on (and shows the damage) instead of stopping.
      // Its energy is charged for the whole task, an upper bound.
      r.status = 1;
      r.flops = static_cast<double>(examples.size()) * tc.epochs *
                (model.flops_per_example().forward + model.flops_per_example().backward);
      bar_->Update(round, done.fetch_add(1) + 1, mine.size());
      return;
    }
    if (!stats.ok()) return fail(stats.error());
    if (dropped) {
      // Vanished mid-training: the work done so far is spent, nothing is sent,
      // and the residual keeps its old value (the device never finished).
      r.status = 1;
      r.flops = stats->flops * fraction;
    } else {
      r.status = 0;
      r.flops = stats->flops;
      r.loss = stats->mean_loss;
      if (hold) {
        held[k] = scratch_[t];
        pending[k] = attacker ? 1 : 0;
      } else if (attacker && attack.poisons_model()) {
        PoisonDelta(round, id, scratch_[t]);
      }
      if (!pending[k]) {
        if (Status st = EncodeUpdate(t, c, scratch_[t], r, nested); !st.ok()) return fail(st.error());
      }
    }
    bar_->Update(round, done.fetch_add(1) + 1, mine.size());
  });
  if (hold) OmniscientAttack(selected, mine, held, pending, results);
  return results;
}

// ALIE and IPM: every sender's delta of the round, from every rank, in slot
// order (so the statistics do not depend on threads or ranks); the moments of
// the honest ones (of the attackers' own where none is honest); then each of
// this rank's attackers encodes its crafted update.
void Simulation::OmniscientAttack(std::span<const uint32_t> selected, std::span<const size_t> mine,
                                  std::vector<std::vector<float>>& held, const std::vector<uint8_t>& pending,
                                  std::vector<SlotResult>& results) {
  struct Entry {
    uint32_t slot = 0;
    bool attacker = false;
    std::span<const float> delta;
  };
  const size_t dim = model_->num_params();
  std::vector<Entry> entries;
  for (size_t k = 0; k < mine.size(); ++k) {
    if (results[k].status == 0) entries.push_back({static_cast<uint32_t>(mine[k]), pending[k] != 0, held[k]});
  }
  std::vector<std::vector<float>> remote;  // every rank's deltas, this one's included
  auto fail_all = [&](const Error& e) {
    for (size_t k = 0; k < mine.size(); ++k) {
      if (pending[k]) {
        results[k].status = 2;
        results[k].error = e.ToString();
      }
    }
  };
  if (comm_->size() > 1) {
    std::vector<uint8_t> out;
    for (const Entry& e : entries) {
      const uint8_t a = e.attacker ? 1 : 0;
      PutBytes(out, &e.slot, sizeof e.slot);
      PutBytes(out, &a, 1);
      PutBytes(out, e.delta.data(), dim * sizeof(float));
    }
    auto all = comm_->AllGather(out);
    if (!all.ok()) return fail_all(all.error());
    const size_t entry_bytes = sizeof(uint32_t) + 1 + dim * sizeof(float);
    std::vector<Entry> every;
    for (const auto& g : *all) {
      if (g.size() % entry_bytes != 0) return fail_all(InternalError("corrupt delta exchange between simulator ranks"));
      for (size_t at = 0; at < g.size(); at += entry_bytes) {
        Entry e;
        std::memcpy(&e.slot, g.data() + at, sizeof e.slot);
        e.attacker = g[at + sizeof e.slot] != 0;
        every.push_back(e);
        remote.emplace_back(dim);
        std::memcpy(remote.back().data(), g.data() + at + sizeof e.slot + 1, dim * sizeof(float));
      }
    }
    for (size_t i = 0; i < every.size(); ++i) every[i].delta = remote[i];
    entries = std::move(every);
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.slot < b.slot; });
  std::vector<std::span<const float>> honest, own;
  for (const Entry& e : entries) (e.attacker ? own : honest).push_back(e.delta);
  const size_t n = entries.size(), m = own.size();
  if (m == 0) return;
  const bool flanders = cfg_.attack.kind == AttackKind::kAlieFlanders;
  std::vector<std::span<const float>> senders;
  if (flanders) {
    // Flower's moments are over every sender of the round, attackers' own honest deltas included.
    for (const Entry& e : entries) senders.push_back(e.delta);
  }
  const DeltaMoments moments = Moments(flanders ? senders : honest.empty() ? own : honest);
  const double z = flanders ? FlandersZ(n, m) : cfg_.attack.z.value_or(AlieZ(n, m));
  if (flanders) RecordFlandersShift(moments, z);
  std::vector<size_t> attackers;
  for (size_t k = 0; k < mine.size(); ++k) {
    if (pending[k] && results[k].status == 0) attackers.push_back(k);
  }
  ParallelFor(attackers.size(), threads_, [&](size_t t, size_t i) {
    const size_t k = attackers[i];
    std::span<float> delta = held[k];
    if (cfg_.attack.kind == AttackKind::kAlie) {
      AlieDelta(moments, z, delta);
    } else if (flanders) {
      FlandersAlieDelta(moments, z, delta);
    } else {
      IpmDelta(moments, cfg_.attack.epsilon, delta);
    }
    if (Status st = EncodeUpdate(t, selected[mine[k]], delta, results[k]); !st.ok()) {
      results[k].status = 2;
      results[k].error = st.error().ToString();
    }
  });
}

void Simulation::RecordFlandersShift(const DeltaMoments& senders, double z) {
  std::vector<double> shift, spread;
  for (double sd : senders.std) {
    if (sd > 0) {
      shift.push_back(z / std::sqrt(sd));  // z sqrt(sd) / sd
      spread.push_back(sd);
    }
  }
  if (shift.empty()) return;
  auto at = [](std::vector<double>& v, double q) {
    const auto k = static_cast<size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
  };
  flanders_shift_.push_back({z, at(shift, 0.1), at(shift, 0.5), at(shift, 0.9), at(spread, 0.5)});
}

// Every rank gets every rank's results, so each runs the same aggregation.
Result<std::vector<SlotResult>> Simulation::Exchange(std::vector<SlotResult> local) {
  if (comm_->size() == 1) return local;
  std::vector<const SlotResult*> mine;
  for (const auto& r : local) mine.push_back(&r);
  FRUGAL_ASSIGN_OR_RETURN(auto gathered, comm_->AllGather(Serialize(mine)));
  std::vector<SlotResult> all;
  for (const auto& g : gathered) {
    FRUGAL_ASSIGN_OR_RETURN(auto part, Deserialize(g));
    for (auto& r : part) all.push_back(std::move(r));
  }
  return all;
}

// Download, compute, upload per client on the profiles; the round closes at
// the K-th completion or at the deadline.
Result<Timing> Simulation::Schedule(std::span<const uint32_t> selected, std::span<const Download> downloads,
                                 const std::map<uint32_t, SlotResult*>& by_client) const {
  struct Finish {
    size_t slot;
    double at;
  };
  Timing t;
  t.accepted.assign(selected.size(), false);
  t.t_down.resize(selected.size());
  t.t_comp.resize(selected.size());
  std::vector<Finish> finishers;
  for (size_t s = 0; s < selected.size(); ++s) {
    const uint32_t c = selected[s];
    const SlotResult& r = *by_client.at(pop_->id(c));
    if (r.status == 2) return InternalError("client " + std::to_string(pop_->id(c)) + " failed: " + r.error);
    t.t_down[s] = TransferSeconds(pop_->radio(c), downloads[s].payload->size() + downloads[s].guide_bytes,
                                  Direction::kDown);
    t.t_comp[s] = ComputeSeconds(pop_->device(c), r.flops);
    if (r.status == 0) {
      double protocol_s = 0;  // secure pipeline: stages 1-2 and the masking before the upload
      if (secure_) {
        const privacy::SecureClientCost& k = secure_->cost(secure_position_.at(c));
        protocol_s = TransferSeconds(pop_->radio(c), k.setup_bytes_up, Direction::kUp) +
                     TransferSeconds(pop_->radio(c), k.setup_bytes_down, Direction::kDown) + k.setup_cpu_s +
                     k.mask_cpu_s;
      }
      finishers.push_back({s, t.t_down[s] + t.t_comp[s] + protocol_s +
                                  TransferSeconds(pop_->radio(c), r.update.size(), Direction::kUp)});
    }
  }
  std::stable_sort(finishers.begin(), finishers.end(), [](const Finish& a, const Finish& b) { return a.at < b.at; });
  for (const Finish& f : finishers) {
    if (t.accepted_count == cfg_.plan.clients_per_round || f.at > cfg_.plan.deadline_s) break;
    t.accepted[f.slot] = true;
    ++t.accepted_count;
    t.close_s = f.at;
  }
  if (t.accepted_count < cfg_.plan.clients_per_round && t.accepted_count < selected.size()) {
    t.close_s = cfg_.plan.deadline_s;
  }
  return t;
}

// Every selected client now holds the version it downloaded; a full download
// is its new base. Every base then advances by the new step, through the same
// code the agent runs.
Status Simulation::AdvanceBases(std::span<const uint32_t> selected, std::span<const Download> downloads,
                                uint32_t version, const RoundOutcome& outcome) {
  for (size_t s = 0; s < selected.size(); ++s) {
    const uint32_t c = selected[s];
    const uint32_t old_base = pop_->base_version(c);
    // The dense baseline sends the full model every time: its clients keep no base.
    const uint32_t new_base = cfg_.pipeline == Pipeline::kDense ? 0 : downloads[s].full ? version : old_base;
    if (new_base != old_base) {
      if (old_base != 0) --bases_.at(old_base).holders;
      if (new_base != 0) ++bases_.at(new_base).holders;
    }
    pop_->SetHeld(c, version, new_base);
  }
  for (auto it = bases_.begin(); it != bases_.end();) it = it->second.holders == 0 ? bases_.erase(it) : std::next(it);
  if (!outcome.applied || !SendsSteps(cfg_.pipeline)) return OkStatus();
  const auto dim = static_cast<uint32_t>(model_->num_params());
  const std::span<const uint8_t> piece = engine_->StepPayload(outcome.new_version);
  const ModelPayloadHeader h{ModelPayloadKind::kChain, version, outcome.new_version, dim, 1};
  const std::vector<uint8_t> step = EncodeModelPayload(h, std::span(&piece, 1));
  for (auto& [b, base] : bases_) FRUGAL_RETURN_IF_ERROR(ApplyModelPayload(step, version, base.model, dim).status());
  return OkStatus();
}

// Every selected client on the ledger, stragglers' and drop-outs' energy included.
RoundAccount Simulation::Account(uint32_t round, double utc_hour, std::span<const uint32_t> selected,
                                 std::span<const Download> downloads, const std::map<uint32_t, SlotResult*>& by_client,
                                 const Timing& timing) {
  RoundAccount account(ledger_.run_id(), round, utc_hour);
  for (size_t s = 0; s < selected.size(); ++s) {
    const uint32_t c = selected[s];
    const SlotResult& r = *by_client.at(pop_->id(c));
    Participation p;
    p.client = pop_->id(c);
    p.device = &pop_->device(c);
    p.radio = &pop_->radio(c);
    p.region = &pop_->region(c);
    p.flops = r.flops;
    p.bytes_down = downloads[s].payload->size();
    uint64_t protocol_up = 0;  // secure pipeline: every protocol message but the masked input
    if (secure_) {
      const privacy::SecureClientCost& k = secure_->cost(secure_position_.at(c));
      p.flops += SecureClientFlops(c);
      p.bytes_down += k.bytes_down + downloads[s].guide_bytes;
      p.protocol_bytes_up = k.bytes_up;
      p.protocol_bytes_down = k.bytes_down;
      p.protocol_cpu_s = k.setup_cpu_s + k.mask_cpu_s + k.unmask_cpu_s;
      protocol_up = k.bytes_up - k.masked_bytes;
      if (r.status == 1) p.bytes_up = protocol_up;
    }
    if (r.status == 1) {
      p.outcome = ClientOutcome::kDropped;
    } else {
      p.bytes_up = r.update.size() + protocol_up;
      p.outcome = timing.accepted[s] ? ClientOutcome::kParticipated : ClientOutcome::kStraggled;
    }
    account.Add(p);
    train_flops_ += r.flops;
    if (p.outcome == ClientOutcome::kParticipated) accepted_flops_ += r.flops;
  }
  return account;
}

Status Simulation::Step(uint32_t round) {
  const auto round_start = Clock::now();
  const double utc_hour = ShiftRound(round, RoundUtcHour(round));
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> selected, Plan(round, utc_hour));
  if (engine_cfg_.dp.enabled() && !selected.empty()) {
    // privacy.target_epsilon: a round that would spend past it is not run, and the run ends here.
    const double q = cfg_.plan.SamplingRate(selected.size(), last_eligible_);
    if (Status st = engine_->CheckPrivacyBudget(round, q); !st.ok()) {
      if (st.error().code() != ErrorCode::kResourceExhausted) return st;
      stop_reason_ = st.error().message();
      if (leader_) std::fprintf(stderr, "frugal-sim: the run ends: %s\n", stop_reason_.c_str());
      return OkStatus();
    }
  }
  std::vector<uint64_t> ids;
  for (uint32_t c : selected) ids.push_back(pop_->id(c));
  FRUGAL_RETURN_IF_ERROR(engine_->OpenRound(round, ids));
  lean_.SetRound(round);  // widths.rolling: this round's windows, for training and Ingest
  if (!selected.empty()) {
    FRUGAL_RETURN_IF_ERROR(engine_->SetSamplingRate(cfg_.plan.SamplingRate(selected.size(), last_eligible_)));
  }
  const uint32_t version = engine_->version();
  FRUGAL_ASSIGN_OR_RETURN(std::vector<Download> downloads, Downloads(selected, version));

  if (cfg_.pipeline == Pipeline::kSecure) FRUGAL_RETURN_IF_ERROR(StartSecureRound(round, selected, downloads));
  const auto train_start = Clock::now();
  std::vector<SlotResult> local = Train(round, selected, downloads, version);
  train_wall_ += Since(train_start);
  FRUGAL_ASSIGN_OR_RETURN(std::vector<SlotResult> results, Exchange(std::move(local)));
  std::map<uint32_t, SlotResult*> by_client;
  for (auto& r : results) by_client[r.client] = &r;
  if (cfg_.attack.active()) {
    // Sent nothing without drawing a drop-out: its training diverged (see Train).
    for (const auto& r : results) {
      double unused = 0;
      if (r.status == 1 && !Dropped(round, r.client, &unused)) ++diverged_;
    }
  }
  FRUGAL_ASSIGN_OR_RETURN(Timing timing, Schedule(selected, downloads, by_client));

  if (secure_) FRUGAL_RETURN_IF_ERROR(FinishSecureRound(round, selected, timing));
  const double cpu0 = ThreadCpuSeconds();
  for (size_t s = 0; s < selected.size(); ++s) {
    if (!timing.accepted[s] || secure_) continue;
    const uint32_t id = pop_->id(selected[s]);
    const NestedNetwork* nested = NestedFor(selected[s]);
    FRUGAL_RETURN_IF_ERROR(engine_->Ingest(round, id, version, by_client.at(id)->update,
                                           static_cast<double>(pop_->NumExamples(selected[s])), nullptr,
                                           nested != nullptr ? std::span<const uint32_t>(nested->map)
                                                             : std::span<const uint32_t>{}));
  }
  TriggerRoundSummary defended;
  if (defense_) {
    // FLTrust's reference and the trigger scan on the trusted set (server CPU, on the ledger).
    FRUGAL_ASSIGN_OR_RETURN(defended, defense_->BeforeClose(*engine_, *model_, train_, *ws_[0]));
  }
  FRUGAL_ASSIGN_OR_RETURN(RoundOutcome outcome, engine_->CloseRound(cfg_.plan.min_quorum));
  // A round that missed its quorum keeps none of the defence's changes (pruned inputs included).
  if (defense_) {
    FRUGAL_RETURN_IF_ERROR(defense_->AfterClose(outcome, *engine_, *model_, defended));
  }
  const double server_cpu = ThreadCpuSeconds() - cpu0 + (secure_ ? secure_->server_cpu_s() : 0.0);
  // After the server's CPU is read: the dump is measurement, not aggregation.
  if (ring_dump_.is_open() && outcome.applied) FRUGAL_RETURN_IF_ERROR(DumpBroadcastStep(round, outcome.new_version));
  FRUGAL_RETURN_IF_ERROR(AdvanceBases(selected, downloads, version, outcome));

  RoundAccount account = Account(round, utc_hour, selected, downloads, by_client, timing);
  account.SetCompleted(outcome.accepted);
  account.SetVerdicts(outcome.verdicts);
  if (!outcome.robust_shortfall.empty() && robust_shortfall_rounds_++ == 0) {
    robust_shortfall_first_ = "round " + std::to_string(round) + ": " + outcome.robust_shortfall;
  }
  for (LedgerRow& row : account.rows()) ledger_.Add(std::move(row));
  FRUGAL_ASSIGN_OR_RETURN(ServerCost server, ServerAggregationCost(profiles_, server_cpu, utc_hour));
  ledger_.AddServer(round, server.joules, server.gco2e);
  updates_total_ += timing.accepted_count;
  RoundRecord& rec = account.record();
  rec.trigger = defended.columns;
  if (secure_ && !secure_->runs_protocol()) {
    // secure.run_protocol = false: no protocol ran, so its columns stay empty (not zero).
    rec.protocol_bytes_up = rec.protocol_bytes_down = 0;
    rec.protocol_cpu_seconds = -1;
  }
  if (secure_ && secure_->config().bits <= 16) {
    // A failed round (too few survivors) summed nothing: 0 wrapped.
    rec.ring_wraps = round_wraps_counted_ ? static_cast<int64_t>(round_wraps_.wrapped) : 0;
    rec.ring_wraps_one_bit_less = round_wraps_counted_ ? static_cast<int64_t>(round_wraps_.wrapped_one_bit_less) : 0;
  }
  planner_->Observe(rec);

  if (leader_ && (round % cfg_.eval_every == 0 || round == cfg_.rounds)) {
    FRUGAL_ASSIGN_OR_RETURN(last_eval_, EvaluateOnThreads(*model_, engine_->release_model(), test_, test_idx_, ws_));
    if (!backdoor_idx_.empty()) {
      // Accuracy against the target label on triggered images: the backdoor's success rate.
      FRUGAL_ASSIGN_OR_RETURN(EvalResult bd, EvaluateOnThreads(*model_, engine_->release_model(), backdoor_test_,
                                                                backdoor_idx_, ws_));
      last_backdoor_ = bd.accuracy;
    }
    if (cfg_.eval_int8) {
      FRUGAL_ASSIGN_OR_RETURN(std::optional<EvalResult> i8,
                              EvaluateReleasedInt8(*model_, engine_->release_model(), test_, test_idx_));
      last_int8_ = i8 ? i8->accuracy : -1;
    }
  }
  rec.backdoor_success = last_backdoor_;
  rec.accuracy_int8 = last_int8_;
  if (outcome.dp) {
    dp_epsilon_ = outcome.dp->epsilon;
    dp_delta_ = outcome.dp->delta;
  } else if (engine_cfg_.dp.enabled() && dp_epsilon_ < 0) {
    dp_epsilon_ = 0;  // nothing released yet
    dp_delta_ = engine_cfg_.dp.delta;
  }
  rec.dp_epsilon = dp_epsilon_;
  rec.dp_delta = dp_delta_;
  rec.accuracy = last_eval_.accuracy;
  rec.loss = last_eval_.loss;
  rec.virtual_seconds = timing.close_s;
  rec.wall_seconds = Since(round_start);
  round_end_clock_s_.push_back(clock_s_ + timing.close_s);
  clock_s_ += timing.close_s + cfg_.round_interval_s;
  planner_->AddActiveHours((timing.close_s + cfg_.round_interval_s) / 3600.0);
  rounds_.push_back(rec);
  if (leader_ && opts_.on_round) {
    bar_->Clear();
    opts_.on_round(rec);
  }
  return Prune(round);
}

// The core decides and takes the step (LeanRound::PruneAfter: the engine prunes
// its model and state, the sub-networks follow); the simulator follows it: the bases every client holds take the shape change
// through the client's own payload code (as a device applies its chain), the
// clients' residuals move into a store of the new dimension, and the model,
// workspaces and planner take the new shape, so the ledger's FLOPs are the
// pruned model's.
Status Simulation::Prune(uint32_t round) {
  FRUGAL_ASSIGN_OR_RETURN(std::optional<PruneStep> pruned, lean_.PruneAfter(round, *engine_));
  if (!pruned) return OkStatus();
  const uint32_t version = pruned->from_version;
  const uint32_t new_version = pruned->to_version;
  const uint32_t old_dim = pruned->old_dim;
  const std::vector<uint32_t>& map = pruned->map;
  const std::vector<uint32_t>& new_sizes = pruned->new_sizes;
  if (SendsSteps(cfg_.pipeline)) {
    const std::span<const uint8_t> piece = engine_->StepPayload(new_version);
    const ModelPayloadHeader h{ModelPayloadKind::kChain, version, new_version, static_cast<uint32_t>(map.size()), 1};
    const std::vector<uint8_t> step = EncodeModelPayload(h, std::span(&piece, 1));
    for (auto& [b, base] : bases_) {
      std::vector<uint32_t> got;
      FRUGAL_RETURN_IF_ERROR(ApplyModelPayload(step, version, base.model, old_dim, &got).status());
      if (got != new_sizes) return InternalError("a base's shape change gave other layer sizes than the engine's");
    }
  } else {
    for (auto& [b, base] : bases_) base.model = ApplyParamMap(map, base.model);
  }
  if (cfg_.uses_residuals()) {
    auto moved = std::make_unique<ResidualStore>(map.size(), residual_budget_,
                                                 spill_path_ + ".v" + std::to_string(new_version),
                                                 bf16_residuals_ ? ResidualPrecision::kBf16 : ResidualPrecision::kFp32);
    std::vector<float> r(old_dim);
    for (uint32_t c = 0; c < pop_->size(); ++c) {
      if (!residuals_->Holds(c)) continue;  // never trained: zeros, which the new store gives too
      FRUGAL_RETURN_IF_ERROR(residuals_->Load(c, r));
      if (std::ranges::all_of(r, [](float x) { return x == 0.0f; })) continue;
      FRUGAL_RETURN_IF_ERROR(moved->Store(c, ApplyParamMap(map, r)));
    }
    residuals_ = std::move(moved);
  }
  model_ = lean_.MakeModel(std::string(model_->name()));
  for (auto& w : ws_) w = model_->MakeWorkspace();
  planner_->SetFlopsPerExample(model_->flops_per_example(), lean_.TrainFlopsByDevice());
  return OkStatus();
}

std::string FormatDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// Virtual time (waits included) and representativeness: what a carbon saving cost.
void Simulation::AddCarbonFigures(RunSummary& sum) const {
  if (!round_end_clock_s_.empty()) sum.extra_metrics["virtual_seconds_total"] = round_end_clock_s_.back();
  if (sum.rounds_to_target && *sum.rounds_to_target >= 1 && *sum.rounds_to_target <= round_end_clock_s_.size()) {
    sum.extra_metrics["virtual_seconds_to_target"] = round_end_clock_s_[*sum.rounds_to_target - 1];
  }
  if (cfg_.carbon.shifts()) {
    sum.extra_metrics["shift_wait_seconds"] = shift_wait_s_;
    if (cfg_.carbon.shift_mode == ShiftMode::kRegion) {
      sum.notes.push_back("Per-region time shifting (carbon.shift_mode = \"region\"): rounds ran on time; a region "
                          "with a cleaner hour within " + FormatDouble(cfg_.carbon.shift_slack_h) +
                          " h owed its floor until then" +
                          (cfg_.carbon.shift_draw_last ? " and was drawn after the other regions." : "."));
    } else {
      sum.notes.push_back("Time shifting: a round waited up to " + FormatDouble(cfg_.carbon.shift_slack_h) +
                          " h on the virtual clock for its candidates' cleaner hours (carbon.shift_slack_h), " +
                          FormatDouble(shift_wait_s_ / 3600.0) + " h in all.");
    }
  }
  // Clients with the same device class and region counted together: a
  // million-client fleet needs only a few dozen entries.
  std::map<std::pair<std::string_view, std::string_view>, FleetMember> groups;
  for (size_t i = 0; i < pop_->size(); ++i) {
    FleetMember& m = groups.try_emplace({pop_->device(i).id, pop_->region(i).id},
                                        FleetMember{pop_->device(i).id, pop_->region(i).id, 0, 0})
                         .first->second;
    m.examples += pop_->NumExamples(i);
    ++m.clients;
  }
  std::vector<FleetMember> fleet;
  for (const auto& [key, m] : groups) fleet.push_back(m);
  sum.representation = RepresentationShares(fleet, ledger_.rows());
  std::string hourly;  // the fleet's regions priced by an hourly curve, and where it came from
  for (const ShareRow& row : sum.representation) {
    auto r = profiles_.Region(row.id);
    if (row.kind != "region" || !r.ok() || (*r)->hourly_source.empty()) continue;
    hourly += (hourly.empty() ? "" : ", ") + row.id + " (" + (*r)->hourly_source + ")";
  }
  if (!hourly.empty()) {
    sum.notes.push_back("Carbon is priced at the UTC hour each round ran, from hourly curves (docs/energy-model.md): " +
                        hourly + ".");
  }
  const auto [region, ratio] = LowestRegionRatio(sum.representation);
  if (!region.empty()) {
    sum.extra_metrics["lowest_region_participation_ratio"] = ratio;
    if (cfg_.plan.selection != SelectionPolicy::kUniform || cfg_.carbon.shifts()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.2f", ratio);
      sum.notes.push_back("Representativeness (representation.csv): the least represented region, " + region +
                          ", has " + buf + "x its share of the clients among the participations.");
    }
  }
}

// DP (central or distributed): what was spent, with what noise, and why the run stopped if it did.
void Simulation::AddPrivacy(RunSummary& sum) const {
  const privacy::DpConfig& dp = engine_cfg_.dp;
  sum.dp_epsilon = std::max(0.0, dp_epsilon_);
  sum.dp_delta = dp.delta;
  const DpAccountingLabel label = DescribeDpAccounting(cfg_.plan, dp);
  sum.dp_sampling = label.sampling;
  sum.dp_adjacency = label.adjacency;
  sum.dp_bound = label.bound;
  sum.stop_reason = stop_reason_;
  sum.extra_metrics["dp_noise_multiplier"] = dp.noise_multiplier;
  sum.extra_metrics["dp_final_clip"] = engine_->dp()->clip();
  sum.extra_metrics["dp_rounds"] = engine_->dp()->rounds();
  // The coordinator's summary words its DP notes the same way (round_driver.cpp).
  std::string note =
      dp.mode == privacy::DpMode::kDistributed
          ? "Distributed differential privacy (docs/privacy.md): each client clipped its update to L2 norm " +
                FormatDouble(dp.clip) + ", rounded it into the ring and added its share of Skellam noise; the "
                "server added none, and each round was accounted with the noise of the clients whose inputs reached "
                "the sum."
          : "Central differential privacy (DP-FedAvg): every accepted update is clipped to L2 norm " +
                FormatDouble(dp.clip) + (dp.adaptive() ? " at first, then adapted toward its " +
                                                             FormatDouble(dp.adaptive_quantile) + " quantile" : "") +
                ", Gaussian noise of " + FormatDouble(dp.noise_multiplier) +
                " x the clip is added to their sum and the sum is divided by the " +
                std::to_string(dp.expected_clients) +
                " clients a round asks for.";
  note += " " + DpAccountingSentence(cfg_.plan, dp, "eligible");
  sum.notes.push_back(std::move(note));
  if (!stop_reason_.empty()) sum.notes.push_back("The run stopped early: " + stop_reason_ + ".");
}

void Simulation::AddNotes(RunSummary& sum) const {
  if (robust_shortfall_rounds_ > 0) {
    sum.notes.push_back("The robust rule ran below its bound in " + std::to_string(robust_shortfall_rounds_) +
                        " rounds (the ledger's robust column names them); the first, " + robust_shortfall_first_ +
                        ".");
  }
  if (lean_.active()) {
    // [prune], [widths]: the shape the run ended with, and what each class trained.
    const FlopCount f = model_->flops_per_example();
    sum.extra_metrics["train_flops_per_example_final"] = f.forward + f.backward;
    std::string note = "The model ended as a " + lean_.ShapeDescription();
    if (!lean_.unpruned_sizes().empty()) {
      const double fraction = (f.forward + f.backward) / lean_.UnprunedTrainFlops();
      sum.extra_metrics["train_flops_fraction_final"] = fraction;
      note += " (structured pruning, [prune]: " + FormatDouble(100 * fraction) +
              "% of the unpruned model's training FLOPs per example)";
    }
    note += ".";
    for (const auto& [device, width] : lean_.width_by_device()) {
      note += " " + device + " clients trained the nested sub-network of width " + FormatDouble(width) +
              " ([widths]); the ledger counts their sub-network's FLOPs.";
    }
    sum.notes.push_back(note);
  }
  if (!cfg_.roster.empty()) {
    sum.notes.push_back("A replay of a recorded run: its " + std::to_string(cfg_.roster.size()) +
                        " clients (ids, profiles and data shares from clients.csv), its configuration (run.toml) and "
                        "each round at the UTC hour it ran.");
    if (cfg_.holdout > 0) {
      sum.notes.push_back("Each client trains on its share less the seeded holdout of " +
                          std::to_string(static_cast<int>(std::lround(cfg_.holdout * 100))) +
                          "% it kept for federated evaluation in the recorded run.");
    }
  } else if (pop_->sampled()) {
    sum.notes.push_back("The population (" + WithCommas(cfg_.clients) +
                        " clients) is larger than a tenth of the training set, so each client holds a seeded sample of " +
                        std::to_string(cfg_.samples_per_client) + " examples drawn from its own class mixture (" +
                        cfg_.partition + "), regenerated on demand rather than stored.");
  } else {
    sum.notes.push_back("Each of the " + WithCommas(cfg_.clients) + " clients holds its own " + cfg_.partition +
                        " partition of the Fashion-MNIST training set and trains on all of it.");
  }
  sum.notes.push_back("Energy is modelled from profiles (docs/energy-model.md): compute from exact FLOPs, radio from the "
                      "encoded bytes actually produced and each burst's tail. Server energy is modelled: measured CPU "
                      "time times a power figure.");
  if (cfg_.plan.selection != SelectionPolicy::kUniform) {
    sum.notes.push_back(std::string("Selection is ") + std::string(SelectionPolicyName(cfg_.plan.selection)) +
                        "-aware: each available client is drawn with probability proportional to 1 / its expected " +
                        (cfg_.plan.selection == SelectionPolicy::kEnergy ? "joules" : "grams of CO2e") +
                        " for a participation (its own compute, the previous round's mean payload sizes, radio tails), "
                        "so cheap devices take part more often than costly ones.");
  }
  sum.notes.push_back("Accuracy is on " + std::to_string(test_idx_.size()) +
                      " Fashion-MNIST test examples, evaluated on the server's model.");
  for (std::string& n : ServerNotes(cfg_.engine)) sum.notes.push_back(std::move(n));
  if (cfg_.attack.active()) {
    const auto count = static_cast<size_t>(std::count(attackers_.begin(), attackers_.end(), true));
    std::string note = "Under attack: " + WithCommas(count) + " of the " + WithCommas(pop_->size()) +
                       " clients (chosen by the seed) are malicious for the whole run (attack.kind = " +
                       std::string(AttackKindName(cfg_.attack.kind)) + ", docs/simulator.md). They train, spend and " +
                       "are counted like any client; their updates go through the same uplink codec.";
    if (cfg_.attack.kind == AttackKind::kBackdoor) {
      note += " Backdoor success is the share of the " + std::to_string(backdoor_test_.size()) +
              " evaluated test images not of class " + std::to_string(cfg_.attack.target_label) +
              " that the server's model puts in that class once the trigger is stamped.";
    }
    if (diverged_ > 0) {
      note += " The attack drove the model where " + WithCommas(diverged_) +
              " client tasks could not train (non-finite loss): those clients sent nothing, as drop-outs do, and "
              "their energy is charged for the whole task.";
    }
    sum.notes.push_back(std::move(note));
  }
  if (bf16_residuals_ && cfg_.uses_residuals()) {
    sum.notes.push_back("Clients' error-feedback residuals are kept as bf16 between rounds (the population's fp32 "
                        "residuals would exceed run.residual_memory_mb); a device keeps its own in fp32.");
  }
  if (cfg_.pipeline == Pipeline::kSecure) {
    const privacy::SecurePipelineConfig& sc = cfg_.engine.secure;
    if (sc.run_protocol) {
      sum.notes.push_back("Secure aggregation (SecAgg+, docs/privacy.md): each round's selected clients ran the real "
                          "four-stage protocol (X25519 keys, Shamir shares, AES-GCM, AES-CTR masks) on a Harary graph "
                          "for " + FormatDouble(sc.corrupt * 100) + "% corrupt / " + FormatDouble(sc.dropout * 100) +
                          "% dropout; each sent its error-feedback-corrected update on the round's shared random "
                          "support, clipped to " + FormatDouble(sc.ring.clip) + " and rounded into a " +
                          std::to_string(sc.ring.bits) + "-bit ring, and the server saw only the sum. The protocol's "
                          "bytes are in the ledger as encoded; its CPU, measured per client on this host's thread CPU "
                          "clock, is charged as that many seconds of the device's compute.");
      sum.extra_metrics["secure_protocol_bytes_up"] = static_cast<double>(secure_bytes_up_);
      sum.extra_metrics["secure_protocol_bytes_down"] = static_cast<double>(secure_bytes_down_);
      sum.extra_metrics["secure_client_cpu_seconds"] = secure_client_cpu_s_;
      sum.extra_metrics["secure_server_cpu_seconds"] = secure_server_cpu_s_;
    } else {
      sum.notes.push_back("ACCURACY ONLY: secure.run_protocol = false, so the SecAgg+ protocol did not run. Each "
                          "round's server summed the survivors' ring inputs directly (the exact mod-2^" +
                          std::to_string(sc.ring.bits) + " sum unmasking yields); clients still clipped, rounded "
                          "into the ring on the shared support, added their noise shares under distributed DP and "
                          "kept error feedback. The protocol's bytes and CPU are NOT in the ledger, rounds.csv or the "
                          "secure_* totals; only the masked input's size is on the uplink.");
    }
    sum.extra_metrics["secure_protocol_run"] = sc.run_protocol ? 1.0 : 0.0;
    sum.extra_metrics["secure_failed_rounds"] = static_cast<double>(secure_failed_rounds_);
    if (sc.ring.bits <= 16) {
      // Summed support entries, and those whose true sum left the ring's centered
      // range (wrapped: only with secure.modular_clip) or a ring one bit smaller's.
      sum.extra_metrics["secure_ring_sum_entries"] = static_cast<double>(run_wraps_.entries);
      sum.extra_metrics["secure_ring_wraps"] = static_cast<double>(run_wraps_.wrapped);
      sum.extra_metrics["secure_ring_wraps_one_bit_less"] = static_cast<double>(run_wraps_.wrapped_one_bit_less);
      if (sc.guided > 0) {  // the same, over the guided part of the support alone
        sum.extra_metrics["secure_ring_sum_entries_guided"] = static_cast<double>(run_wraps_guided_.entries);
        sum.extra_metrics["secure_ring_wraps_guided"] = static_cast<double>(run_wraps_guided_.wrapped);
        sum.extra_metrics["secure_ring_wraps_one_bit_less_guided"] =
            static_cast<double>(run_wraps_guided_.wrapped_one_bit_less);
      }
    }
    if (sc.ring.modular) {
      sum.notes.push_back("Modular clipping (secure.modular_clip): the " + std::to_string(sc.ring.bits) +
                          "-bit ring holds the worst-case sum of " + std::to_string(sc.ring.max_summands) +
                          " clients; each round's sum was decoded as its centered residue, and " +
                          std::to_string(run_wraps_.wrapped) + " of " + std::to_string(run_wraps_.entries) +
                          " summed support entries wrapped (counted from the inputs, which only the simulator "
                          "holds).");
    }
    if (sc.guided > 0) {
      sum.notes.push_back("The support was guided (secure.guided = " + FormatDouble(sc.guided) + "): its coordinates "
                          "that carried the most of the last " + std::to_string(sc.guide_rounds) + " broadcast steps, "
                          "the rest rand-k from the round's seed; the guide's encoded bytes are on every selected "
                          "client's downlink.");
      sum.extra_metrics["secure_guide_bytes_down"] = static_cast<double>(secure_guide_bytes_total_);
      if (sc.derive_guide) {
        sum.notes.push_back("secure.derive_guide: " + std::to_string(secure_guides_derived_) +
                            " tasks went without the guide, their clients holding the steps it comes from "
                            "(each keeps its last " + std::to_string(sc.guide_rounds) + ").");
        sum.extra_metrics["secure_guides_derived"] = static_cast<double>(secure_guides_derived_);
      }
    }
  }
}

// The fleet for clients.csv; none for sampled fleets (no data share to name).
std::vector<RosterEntry> Simulation::Roster() const {
  if (!cfg_.roster.empty()) return cfg_.roster;
  std::vector<RosterEntry> out;
  if (pop_->sampled() || pop_->size() > 100'000) return out;
  const PartitionSpec spec{.scheme = cfg_.partition, .clients = pop_->size(), .alpha = cfg_.alpha,
                           .shards_per_client = cfg_.shards_per_client, .seed = cfg_.seed, .holdout = cfg_.holdout};
  for (size_t i = 0; i < pop_->size(); ++i) {
    out.push_back(RosterEntry{.id = pop_->id(i), .name = "sim-" + std::to_string(pop_->id(i)),
                              .device = pop_->device(i).id, .radio = pop_->radio(i).id,
                              .region = pop_->region(i).id, .examples = pop_->NumExamples(i), .partition = spec,
                              .partition_index = static_cast<uint32_t>(i)});
  }
  return out;
}

Result<RunResult> Simulation::Finish() {
  bar_->Clear();
  RunResult result;
  result.rounds = rounds_;
  RunSummary& sum = result.summary;
  sum = SummarizeRun(cfg_, cfg_.name, rounds_, ledger_, cfg_.flat);
  sum.wall_seconds = Since(run_start_);
  sum.client_updates_per_second = train_wall_ > 0 ? static_cast<double>(updates_total_) / train_wall_ : 0;
  sum.config["mpi_ranks"] = std::to_string(comm_->size());
  sum.config["threads"] = std::to_string(threads_);
  AddNotes(sum);
  if (gemm_gflops_ > 0) {
    // (client-updates/s x FLOPs per update) / (sgemm FLOP/s x threads of every rank), all measured in this run:
    // the ranks train at the same time, each on its own threads.
    const double achieved = train_wall_ > 0 ? train_flops_ / train_wall_ / 1e9 : 0;
    sum.extra_metrics["gemm_gflops_per_thread"] = gemm_gflops_;
    sum.extra_metrics["trainer_efficiency"] =
        achieved / (gemm_gflops_ * static_cast<double>(threads_) * static_cast<double>(comm_->size()));
  }
  if (cfg_.attack.kind == AttackKind::kBackdoor) sum.extra_metrics["backdoor_success"] = last_backdoor_;
  if (defense_) {
    sum.extra_metrics.merge(defense_->SummaryMetrics());
    sum.notes.insert(sum.notes.end(), defense_->notes().begin(), defense_->notes().end());
  }
  if (engine_cfg_.dp.enabled()) AddPrivacy(sum);
  if (cfg_.attack.active()) sum.extra_metrics["attack_diverged_tasks"] = static_cast<double>(diverged_);
  if (!flanders_shift_.empty()) {
    // Means over the attacked rounds of each round's figure.
    static constexpr const char* kNames[] = {"alie_flanders_z", "alie_flanders_shift_std_p10",
                                             "alie_flanders_shift_std_median", "alie_flanders_shift_std_p90",
                                             "alie_flanders_sender_std_median"};
    for (size_t i = 0; i < 5; ++i) {
      double total = 0;
      for (const auto& r : flanders_shift_) total += r[i];
      sum.extra_metrics[kNames[i]] = total / static_cast<double>(flanders_shift_.size());
    }
  }
  sum.extra_metrics["train_wall_seconds"] = train_wall_;
  AddCarbonFigures(sum);
  sum.extra_metrics["train_gflops_per_second"] = train_wall_ > 0 ? train_flops_ / train_wall_ / 1e9 : 0;
  // Per update that counted, so stragglers' wasted work does not inflate it (it is in train_gflops_per_second).
  sum.extra_metrics["flops_per_update"] =
      updates_total_ > 0 ? accepted_flops_ / static_cast<double>(updates_total_) : 0;
  sum.extra_metrics["residual_clients"] = static_cast<double>(residuals_->clients());
  sum.extra_metrics["residual_resident_bytes"] = static_cast<double>(residuals_->resident_bytes());
  sum.extra_metrics["residual_spilled_bytes"] = static_cast<double>(residuals_->spilled_bytes());
  sum.extra_metrics["population_bytes_per_client"] = pop_->BytesPerClient();
  result.population_bytes_per_client = pop_->BytesPerClient();
  result.residual_clients = residuals_->clients();
  result.final_model.assign(engine_->release_model().begin(), engine_->release_model().end());

  if (leader_ && cfg_.eval_int8 && last_int8_ >= 0) sum.extra_metrics["final_accuracy_int8"] = last_int8_;
  std::optional<StudentReport> student;
  if (leader_ && cfg_.distill.at_end) {
    FRUGAL_ASSIGN_OR_RETURN(student, DistillReleased(*model_, engine_->release_model(), train_, test_, test_idx_,
                                                     cfg_.distill.config, cfg_.seed));
    AddStudentToSummary(*student, sum.extra_metrics, sum.notes);
  }

  if (leader_ && !opts_.out_dir.empty()) {
    const std::vector<RosterEntry> roster = Roster();
    RunFiles files;
    files.summary = &sum;
    files.rounds = result.rounds;
    files.ledger = &ledger_;
    files.run_toml = TomlText(cfg_.effective);
    files.clients = roster;
    files.emissions.timestamp = IsoTimestamp();
    files.emissions.duration_s = sum.wall_seconds;
    files.emissions.region = cfg_.regions.size() == 1 ? cfg_.regions[0].id : "mixed";
    files.emissions.pue = profiles_.server_pue();
    if (student) files.student = &*student;
    FRUGAL_RETURN_IF_ERROR(WriteRunDirectory(opts_.out_dir, files));
  }
  return result;
}

}  // namespace

Result<RunResult> RunSimulation(const SimConfig& cfg, const RunOptions& opts) {
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<Simulation> sim, Simulation::Create(cfg, opts));
  for (uint32_t round = 1; round <= cfg.rounds && !sim->stopped(); ++round) FRUGAL_RETURN_IF_ERROR(sim->Step(round));
  return sim->Finish();
}

}  // namespace frugal::sim
