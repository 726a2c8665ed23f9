#include "frugal/sim/runner.h"

#include <time.h>
#include <unistd.h>

#include <Eigen/Dense>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "frugal/core/random.h"
#include "frugal/data/dataset.h"
#include "frugal/energy/model.h"
#include "frugal/energy/profiles.h"
#include "frugal/model/model.h"
#include "frugal/round/client_task.h"
#include "frugal/round/engine.h"
#include "frugal/round/model_payload.h"
#include "frugal/round/selection.h"
#include "frugal/round/settings.h"
#include "frugal/sim/population.h"
#include "frugal/sim/progress.h"
#include "frugal/sim/residual_store.h"

namespace frugal::sim {
namespace {

enum Stream : uint64_t { kSelect = 11, kTrain = 12, kDropout = 13, kInit = 14 };

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

Status WriteFile(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
  std::ofstream out(path);
  if (!out) return UnavailableError("cannot create " + path.string());
  write(out);
  out.close();
  if (!out) return UnavailableError("error writing " + path.string());
  return OkStatus();
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
  EvalResult all;
  for (size_t p = 0; p < parts; ++p) {
    FRUGAL_RETURN_IF_ERROR(status[p]);
    all.accuracy += ev[p].accuracy * static_cast<double>(ev[p].examples);
    all.loss += ev[p].loss * static_cast<double>(ev[p].examples);
    all.examples += ev[p].examples;
    all.flops += ev[p].flops;
  }
  if (all.examples > 0) {
    all.accuracy /= static_cast<double>(all.examples);
    all.loss /= static_cast<double>(all.examples);
  }
  return all;
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

Result<RunResult> RunSimulation(const SimConfig& cfg, const RunOptions& opts) {
  const auto run_start = Clock::now();
  std::unique_ptr<Communicator> local;
  Communicator* comm = opts.comm;
  if (comm == nullptr) {
    local = MakeLocalCommunicator();
    comm = local.get();
  }
  const bool leader = comm->rank() == 0;
  const size_t threads = cfg.threads != 0 ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());

  const double gemm_gflops = opts.gemm_baseline ? MeasureGemmGflops(1024, 2.0) : 0.0;

  // ---- set-up: data, model, profiles, population
  const std::string dir = cfg.data_dir.empty() ? std::string(FRUGAL_FMNIST_DIR) : cfg.data_dir;
  FRUGAL_ASSIGN_OR_RETURN(Dataset train, LoadFashionMnist(Split::kTrain, dir));
  FRUGAL_ASSIGN_OR_RETURN(Dataset test, LoadFashionMnist(Split::kTest, dir));
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, MakeModel(cfg.model, train.num_features, train.num_classes));
  FRUGAL_ASSIGN_OR_RETURN(EnergyProfiles profiles, cfg.profiles.empty()
                                                       ? EnergyProfiles::LoadDefault()
                                                       : EnergyProfiles::LoadDefaultWithOverride(cfg.profiles));
  FRUGAL_ASSIGN_OR_RETURN(Population pop, Population::Create(cfg, train, profiles));
  const size_t dim = model->num_params();

  std::vector<float> init(dim);
  model->InitParams(init, DeriveSeed(cfg.seed, kInit));
  RoundEngine engine(std::move(init), cfg.engine);

  if (!opts.out_dir.empty() && leader) std::filesystem::create_directories(opts.out_dir);
  const std::filesystem::path spill_dir = !cfg.spill_dir.empty()   ? std::filesystem::path(cfg.spill_dir)
                                          : !opts.out_dir.empty() ? std::filesystem::path(opts.out_dir)
                                                                  : std::filesystem::temp_directory_path();
  std::error_code ec;
  std::filesystem::create_directories(spill_dir, ec);
  // The slot file exists only while residuals spill; ResidualStore deletes it.
  const std::string spill = (spill_dir / ("frugal-residuals." + std::to_string(comm->rank()) + "." +
                                          std::to_string(::getpid()) + ".bin")).string();
  // Where the population's fp32 residuals could not all stay in the memory
  // budget (fleet scale), they are kept as bf16: half the memory and spill
  // traffic. Smaller populations keep them exactly, as a device does.
  const auto residual_budget = static_cast<size_t>(cfg.residual_memory_mb * 1024 * 1024);
  const bool bf16_residuals = static_cast<double>(pop.size()) * static_cast<double>(dim) * sizeof(float) >
                              static_cast<double>(residual_budget);
  ResidualStore residuals(dim, residual_budget, spill,
                          bf16_residuals ? ResidualPrecision::kBf16 : ResidualPrecision::kFp32);
  const bool use_residuals = cfg.pipeline == Pipeline::kFrugal;

  std::vector<std::unique_ptr<ModelWorkspace>> ws;
  for (size_t t = 0; t < threads; ++t) ws.push_back(model->MakeWorkspace());
  std::vector<std::vector<float>> scratch(threads), resid_buf(threads);
  std::vector<std::vector<uint32_t>> example_buf(threads);

  std::vector<uint32_t> test_idx;
  if (cfg.eval_examples != 0 && cfg.eval_examples < test.size()) {
    test_idx.resize(cfg.eval_examples);
    for (uint32_t i = 0; i < cfg.eval_examples; ++i) test_idx[i] = i;
  } else {
    test_idx.resize(test.size());
    for (uint32_t i = 0; i < test.size(); ++i) test_idx[i] = i;
  }

  // A client's copy is its last full download (its base) plus every step
  // since, applied in order. Each base is kept advanced to the current
  // version, which is exactly what every client holding it has after its
  // chain download; clients never need a copy of their own.
  struct Base {
    std::vector<float> model;
    uint64_t holders = 0;
  };
  std::map<uint32_t, Base> bases;
  if (cfg.seed_init && cfg.pipeline == Pipeline::kFrugal) {
    // Version 1 is InitParams(seed): every client can make it locally, so it
    // holds version 1 from the start and its first download is a chain.
    bases[1] = Base{std::vector<float>(engine.global_model().begin(), engine.global_model().end()), pop.size()};
    for (size_t i = 0; i < pop.size(); ++i) pop.SetHeld(i, 1, 1);
  }

  EnergyLedger ledger(cfg.name + "-" + std::to_string(cfg.seed));
  RunResult result;
  double clock_s = 0;
  double train_wall = 0, train_flops = 0;
  uint64_t updates_total = 0;
  ProgressBar bar(opts.progress && leader, cfg.rounds);
  EvalResult last_eval;
  const double flops_per_example = model->flops_per_example().forward + model->flops_per_example().backward;
  uint64_t expected_bytes_down = 0, expected_bytes_up = 0;  // for energy- and carbon-aware selection

  for (uint32_t round = 1; round <= cfg.rounds; ++round) {
    const auto round_start = Clock::now();
    const double utc_hour = cfg.start_utc_hour + clock_s / 3600.0;
    std::vector<uint32_t> available = pop.Available(round, utc_hour);
    const uint64_t select_seed = DeriveSeed(DeriveSeed(cfg.seed, kSelect), round);
    std::vector<uint32_t> selected;
    if (cfg.plan.selection == SelectionPolicy::kUniform) {
      selected = SelectClients(available, cfg.plan.SelectCount(), select_seed);
    } else {
      // Each client's expected cost: its own compute for its examples, and the
      // previous round's mean encoded sizes (round 1: the payload clients hold).
      if (round == 1) {
        FRUGAL_ASSIGN_OR_RETURN(auto first, engine.ModelPayloadFor(pop.held_version(0)));
        expected_bytes_down = expected_bytes_up = first->size();
      }
      std::vector<double> weights(available.size());
      for (size_t i = 0; i < available.size(); ++i) {
        const uint32_t c = available[i];
        const ParticipationEstimate e{flops_per_example * static_cast<double>(pop.NumExamples(c) * cfg.task.train.epochs),
                                      expected_bytes_down, expected_bytes_up};
        weights[i] = SelectionWeight(cfg.plan.selection, pop.device(c), pop.radio(c), pop.region(c), utc_hour, e);
      }
      selected = SelectClientsWeighted(available, weights, cfg.plan.SelectCount(), select_seed);
    }
    std::vector<uint64_t> sel64(selected.begin(), selected.end());
    FRUGAL_RETURN_IF_ERROR(engine.OpenRound(round, sel64));
    const uint32_t version = engine.version();

    // Downloads: one payload per distinct held version, shared by the clients holding it.
    std::vector<std::shared_ptr<const std::vector<uint8_t>>> payloads(selected.size());
    std::vector<bool> full(selected.size());
    for (size_t s = 0; s < selected.size(); ++s) {
      const uint32_t c = selected[s];
      FRUGAL_ASSIGN_OR_RETURN(payloads[s], engine.ModelPayloadFor(pop.held_version(c)));
      std::vector<std::span<const uint8_t>> pieces;
      FRUGAL_ASSIGN_OR_RETURN(ModelPayloadHeader h, ParseModelPayload(*payloads[s], static_cast<uint32_t>(dim), &pieces));
      full[s] = h.kind == ModelPayloadKind::kFull;
      if (full[s] && !bases.contains(version)) {
        std::vector<float> copy;
        FRUGAL_RETURN_IF_ERROR(ApplyModelPayload(*payloads[s], 0, copy, static_cast<uint32_t>(dim)).status());
        bases[version] = Base{std::move(copy), 0};
      }
    }

    // Training: this rank's clients, on the thread pool.
    std::vector<size_t> mine;
    for (size_t s = 0; s < selected.size(); ++s) {
      if (static_cast<int>(selected[s] % static_cast<uint32_t>(comm->size())) == comm->rank()) mine.push_back(s);
    }
    std::vector<SlotResult> local_results(mine.size());
    std::atomic<size_t> done{0};
    const auto train_start = Clock::now();
    ParallelFor(mine.size(), threads, [&](size_t t, size_t k) {
      const size_t s = mine[k];
      const uint32_t c = selected[s];
      SlotResult& r = local_results[k];
      r.client = c;
      auto fail = [&](const Error& e) {
        r.status = 2;
        r.error = e.ToString();
      };
      // The copy the client trains from, after its download (see Base).
      const std::vector<float>& start = bases.at(full[s] ? version : pop.base_version(c)).model;
      std::span<const uint32_t> examples = pop.Examples(c, example_buf[t]);
      TrainConfig tc = cfg.task.train;
      tc.seed = DeriveSeed(DeriveSeed(cfg.seed, kTrain), (static_cast<uint64_t>(round) << 32) | c);
      Rng drop_rng(DeriveSeed(DeriveSeed(cfg.seed, kDropout), (static_cast<uint64_t>(round) << 32) | c));
      const bool dropped = cfg.dropout > 0 && drop_rng.Uniform() < cfg.dropout;
      const double fraction = drop_rng.Uniform();
      std::span<float> resid;
      if (use_residuals) {
        resid_buf[t].resize(dim);
        if (Status st = residuals.Load(c, resid_buf[t]); !st.ok()) return fail(st.error());
        resid = resid_buf[t];
      }
      auto task = RunClientTask(*model, start, train, examples, tc, cfg.task.uplink, resid, *ws[t], scratch[t]);
      if (!task.ok()) return fail(task.error());
      if (dropped) {
        // Vanished mid-training: the work done so far is spent, nothing is sent,
        // and the residual keeps its old value (the device never finished).
        r.status = 1;
        r.flops = task->train.flops * fraction;
      } else {
        if (use_residuals) {
          if (Status st = residuals.Store(c, resid); !st.ok()) return fail(st.error());
        }
        r.status = 0;
        r.flops = task->train.flops;
        r.loss = task->train.mean_loss;
        r.update = std::move(task->update);
      }
      bar.Update(round, done.fetch_add(1) + 1, mine.size());
    });
    const double round_train_wall = Since(train_start);

    // Exchange results between ranks; every rank then runs the same aggregation.
    std::vector<const SlotResult*> mine_ptrs;
    for (const auto& r : local_results) mine_ptrs.push_back(&r);
    std::vector<SlotResult> all_results;
    if (comm->size() == 1) {
      all_results = std::move(local_results);
    } else {
      FRUGAL_ASSIGN_OR_RETURN(auto gathered, comm->AllGather(Serialize(mine_ptrs)));
      for (const auto& g : gathered) {
        FRUGAL_ASSIGN_OR_RETURN(auto part, Deserialize(g));
        for (auto& r : part) all_results.push_back(std::move(r));
      }
    }
    std::map<uint32_t, SlotResult*> by_client;
    for (auto& r : all_results) by_client[r.client] = &r;

    // Virtual clock: download, compute, upload per client; the round closes at
    // the K-th completion or at the deadline.
    struct Timing {
      size_t slot;
      double finish;
    };
    std::vector<Timing> finishers;
    std::vector<double> t_down(selected.size()), t_comp(selected.size());
    for (size_t s = 0; s < selected.size(); ++s) {
      const uint32_t c = selected[s];
      const SlotResult& r = *by_client.at(c);
      if (r.status == 2) return InternalError("client " + std::to_string(c) + " failed: " + r.error);
      t_down[s] = TransferSeconds(pop.radio(c), payloads[s]->size(), Direction::kDown);
      t_comp[s] = ComputeSeconds(pop.device(c), r.flops);
      if (r.status == 0) {
        finishers.push_back({s, t_down[s] + t_comp[s] + TransferSeconds(pop.radio(c), r.update.size(), Direction::kUp)});
      }
    }
    std::stable_sort(finishers.begin(), finishers.end(), [](const Timing& a, const Timing& b) { return a.finish < b.finish; });
    std::vector<bool> accepted(selected.size(), false);
    uint32_t n_accepted = 0;
    double close_s = 0;
    for (const Timing& f : finishers) {
      if (n_accepted == cfg.plan.clients_per_round || f.finish > cfg.plan.deadline_s) break;
      accepted[f.slot] = true;
      ++n_accepted;
      close_s = f.finish;
    }
    if (n_accepted < cfg.plan.clients_per_round && n_accepted < selected.size()) close_s = cfg.plan.deadline_s;

    // Aggregate in slot order (selection is sorted by id): same sums on every rank and thread count.
    const double cpu0 = ThreadCpuSeconds();
    for (size_t s = 0; s < selected.size(); ++s) {
      if (!accepted[s]) continue;
      const uint32_t c = selected[s];
      FRUGAL_RETURN_IF_ERROR(engine.Ingest(round, c, version, by_client.at(c)->update,
                                           static_cast<double>(pop.NumExamples(c))));
    }
    FRUGAL_ASSIGN_OR_RETURN(RoundOutcome outcome, engine.CloseRound(cfg.plan.min_quorum));
    const double server_cpu = ThreadCpuSeconds() - cpu0;

    // Every selected client now holds the version it downloaded; a full download is its new base.
    for (size_t s = 0; s < selected.size(); ++s) {
      const uint32_t c = selected[s];
      const uint32_t old_base = pop.base_version(c);
      // The dense baseline sends the full model every time: its clients keep no base.
      const uint32_t new_base = cfg.pipeline == Pipeline::kDense ? 0 : full[s] ? version : old_base;
      if (new_base != old_base) {
        if (old_base != 0) --bases.at(old_base).holders;
        if (new_base != 0) ++bases.at(new_base).holders;
      }
      pop.SetHeld(c, version, new_base);
    }
    for (auto it = bases.begin(); it != bases.end();) it = it->second.holders == 0 ? bases.erase(it) : std::next(it);
    // Advance every base by the new step, through the same code the agent runs.
    if (outcome.applied && cfg.pipeline == Pipeline::kFrugal) {
      const std::span<const uint8_t> piece = engine.StepPayload(outcome.new_version);
      const ModelPayloadHeader h{ModelPayloadKind::kChain, version, outcome.new_version, static_cast<uint32_t>(dim), 1};
      const std::vector<uint8_t> step = EncodeModelPayload(h, std::span(&piece, 1));
      for (auto& [b, base] : bases) {
        FRUGAL_RETURN_IF_ERROR(ApplyModelPayload(step, version, base.model, static_cast<uint32_t>(dim)).status());
      }
    }

    // Ledger: every selected client, stragglers' and drop-outs' energy included.
    RoundRecord rec;
    rec.round = round;
    rec.selected = static_cast<uint32_t>(selected.size());
    rec.completed = outcome.accepted;
    for (size_t s = 0; s < selected.size(); ++s) {
      const uint32_t c = selected[s];
      const SlotResult& r = *by_client.at(c);
      std::vector<Transfer> transfers{{0.0, payloads[s]->size(), Direction::kDown}};
      ClientOutcome oc = ClientOutcome::kParticipated;
      if (r.status == 1) {
        oc = ClientOutcome::kDropped;
      } else {
        transfers.push_back({t_down[s] + t_comp[s], r.update.size(), Direction::kUp});
        if (!accepted[s]) {
          oc = ClientOutcome::kStraggled;
          ++rec.stragglers;
        }
      }
      ClientRoundUsage usage;
      usage.round = round;
      usage.client_id = c;
      usage.flops = r.flops;
      usage.transfers = transfers;
      usage.utc_hour = utc_hour;
      usage.outcome = oc;
      LedgerRow row = MakeLedgerRow(ledger.run_id(), pop.device(c), pop.radio(c), pop.region(c), usage);
      rec.bytes_up += row.bytes_up;
      rec.bytes_down += row.bytes_down;
      rec.joules_compute += row.compute_j;
      rec.joules_radio += row.radio_j;
      rec.gco2e += row.gco2e;
      train_flops += r.flops;
      ledger.Add(std::move(row));
    }
    FRUGAL_ASSIGN_OR_RETURN(ServerCost server, ServerAggregationCost(profiles, server_cpu, utc_hour));
    ledger.AddServer(round, server.joules, server.gco2e);
    updates_total += n_accepted;
    expected_bytes_down = rec.bytes_down / std::max<uint32_t>(1, rec.selected);
    expected_bytes_up = rec.bytes_up / std::max<uint32_t>(1, rec.selected);
    train_wall += round_train_wall;

    if (leader && (round % cfg.eval_every == 0 || round == cfg.rounds)) {
      FRUGAL_ASSIGN_OR_RETURN(last_eval, EvaluateOnThreads(*model, engine.release_model(), test, test_idx, ws));
    }
    rec.accuracy = last_eval.accuracy;
    rec.loss = last_eval.loss;
    rec.virtual_seconds = close_s;
    rec.wall_seconds = Since(round_start);
    clock_s += close_s + cfg.round_interval_s;
    result.rounds.push_back(rec);
    if (leader && opts.on_round) {
      bar.Clear();
      opts.on_round(rec);
    }
  }
  bar.Clear();

  // ---- summary and run directory
  RunSummary& sum = result.summary;
  sum.run_id = ledger.run_id();
  sum.scenario = cfg.name;
  sum.pipeline = std::string(PipelineName(cfg.pipeline));
  sum.model = cfg.model;
  ComputeTargets(result.rounds, cfg.target_accuracy, sum);
  const EnergyTotals totals = ledger.RunTotals();
  sum.joules_server = totals.server_j;
  sum.gco2e += totals.server_gco2e;
  sum.wall_seconds = Since(run_start);
  sum.client_updates_per_second = train_wall > 0 ? static_cast<double>(updates_total) / train_wall : 0;
  sum.peak_rss_bytes = ProcessPeakRssBytes();
  for (const auto& [radio, t] : ledger.TotalsByRadio()) sum.joules_by_radio[radio] = t.total_j;
  for (const auto& [device, t] : ledger.TotalsByDevice()) sum.joules_by_device[device] = t.total_j;
  sum.config = cfg.flat;
  sum.config["pipeline"] = sum.pipeline;
  sum.config["mpi_ranks"] = std::to_string(comm->size());
  sum.config["threads"] = std::to_string(threads);
  if (pop.sampled()) {
    sum.notes.push_back("The population (" + WithCommas(cfg.clients) +
                        " clients) is larger than a tenth of the training set, so each client holds a seeded sample of " +
                        std::to_string(cfg.samples_per_client) + " examples drawn from its own class mixture (" +
                        cfg.partition + "), regenerated on demand rather than stored.");
  } else {
    sum.notes.push_back("Each of the " + WithCommas(cfg.clients) + " clients holds its own " + cfg.partition +
                        " partition of the Fashion-MNIST training set.");
    if (cfg.holdout > 0) {
      sum.notes.push_back("Each client trains on its partition less a seeded holdout of " +
                          std::to_string(static_cast<int>(std::lround(cfg.holdout * 100))) +
                          "% (data.holdout), as Flower's examples keep for local evaluation.");
    }
  }
  sum.notes.push_back("Energy is modelled from profiles (docs/energy-model.md): compute from exact FLOPs, radio from the "
                      "encoded bytes actually produced and each burst's tail. Server energy is measured CPU time times "
                      "a power figure.");
  if (cfg.plan.selection != SelectionPolicy::kUniform) {
    sum.notes.push_back(std::string("Selection is ") + std::string(SelectionPolicyName(cfg.plan.selection)) +
                        "-aware: each available client is drawn with probability proportional to 1 / its expected " +
                        (cfg.plan.selection == SelectionPolicy::kEnergy ? "joules" : "grams of CO2e") +
                        " for a participation (its own compute, the previous round's mean payload sizes, radio tails), "
                        "so cheap devices take part more often than costly ones.");
  }
  sum.notes.push_back("Accuracy is on " + std::to_string(test_idx.size()) +
                      " Fashion-MNIST test examples, evaluated on the server's model.");
  for (std::string& n : ServerNotes(cfg.engine)) sum.notes.push_back(std::move(n));
  if (bf16_residuals && use_residuals) {
    sum.notes.push_back("Clients' error-feedback residuals are kept as bf16 between rounds (the population's fp32 "
                        "residuals would exceed run.residual_memory_mb); a device keeps its own in fp32.");
  }
  if (gemm_gflops > 0) {
    // (client-updates/s x FLOPs per update) / (sgemm FLOP/s x threads), all measured in this run.
    const double achieved = train_wall > 0 ? train_flops / train_wall / 1e9 : 0;
    sum.extra_metrics["gemm_gflops_per_thread"] = gemm_gflops;
    sum.extra_metrics["trainer_efficiency"] = achieved / (gemm_gflops * static_cast<double>(threads));
  }
  sum.extra_metrics["train_wall_seconds"] = train_wall;
  sum.extra_metrics["train_gflops_per_second"] = train_wall > 0 ? train_flops / train_wall / 1e9 : 0;
  sum.extra_metrics["flops_per_update"] = updates_total > 0 ? train_flops / static_cast<double>(updates_total) : 0;
  sum.extra_metrics["residual_clients"] = static_cast<double>(residuals.clients());
  sum.extra_metrics["residual_resident_bytes"] = static_cast<double>(residuals.resident_bytes());
  sum.extra_metrics["residual_spilled_bytes"] = static_cast<double>(residuals.spilled_bytes());
  sum.extra_metrics["population_bytes_per_client"] = pop.BytesPerClient();
  sum.extra_metrics["server_joules"] = totals.server_j;
  result.population_bytes_per_client = pop.BytesPerClient();
  result.residual_clients = residuals.clients();
  result.final_model.assign(engine.release_model().begin(), engine.release_model().end());

  if (leader && !opts.out_dir.empty()) {
    const std::filesystem::path o(opts.out_dir);
    FRUGAL_RETURN_IF_ERROR(WriteFile(o / "rounds.csv", [&](std::ostream& os) { WriteRoundsCsv(os, result.rounds); }));
    FRUGAL_RETURN_IF_ERROR(WriteFile(o / "ledger.csv", [&](std::ostream& os) { ledger.WriteLedgerCsv(os); }));
    EnergyLedger::EmissionsMeta meta;
    meta.timestamp = IsoTimestamp();
    meta.duration_s = sum.wall_seconds;
    meta.region = cfg.regions.size() == 1 ? cfg.regions[0].id : "mixed";
    meta.pue = profiles.server_pue();
    FRUGAL_RETURN_IF_ERROR(WriteFile(o / "emissions.csv", [&](std::ostream& os) { ledger.WriteEmissionsCsv(os, meta); }));
    FRUGAL_RETURN_IF_ERROR(WriteFile(o / "summary.json", [&](std::ostream& os) { WriteSummaryJson(os, sum); }));
    FRUGAL_RETURN_IF_ERROR(WriteFile(o / "report.html", [&](std::ostream& os) { WriteReportHtml(os, sum, result.rounds); }));
  }
  return result;
}

}  // namespace frugal::sim
