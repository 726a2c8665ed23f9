// frugal-train-bench: training throughput of the models on real Fashion-MNIST,
// as examples/s and as achieved GFLOP/s (from the models' exact FLOP counts)
// relative to Eigen's own sgemm measured in the same process. One JSON object
// per line on stdout.
//
//   frugal-train-bench [--seconds S] [--cnn-examples N] [--fmnist-dir DIR] [--models logreg,mlp,cnn,flower-round]

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/data/dataset.h"
#include "frugal/data/partition.h"
#include "frugal/model/eigen.h"
#include "frugal/model/model.h"
#include "frugal/train/trainer.h"

namespace frugal {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// CPU seconds used by the whole process (all threads). On a shared machine the
// wall clock also counts time spent descheduled; CPU time does not, so rates
// and ratios are reported per CPU second as well as per wall second.
double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Timing {
  double wall = 0;  // seconds per call
  double cpu = 0;   // CPU seconds per call, all threads
};

// Runs body() repeatedly for at least min_seconds of wall time (after one
// warm-up call, which grows workspaces and fills caches).
template <typename Body>
Timing TimePerCall(double min_seconds, Body body) {
  body();
  size_t calls = 0;
  const auto start = Clock::now();
  const double cpu_start = ProcessCpuSeconds();
  double elapsed = 0.0;
  do {
    body();
    ++calls;
    elapsed = Seconds(start);
  } while (elapsed < min_seconds);
  return {elapsed / static_cast<double>(calls), (ProcessCpuSeconds() - cpu_start) / static_cast<double>(calls)};
}

// GFLOP per wall second and per CPU second.
struct Rate {
  double wall = 0;
  double cpu = 0;
};

Rate RateOf(double flops, Timing t) { return {flops / t.wall * 1e-9, flops / t.cpu * 1e-9}; }

// Eigen single-precision GEMM C = A * B with A m x k, B k x n.
Rate SgemmGflops(Eigen::Index m, Eigen::Index k, Eigen::Index n, double min_seconds) {
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(m, k), b = Eigen::MatrixXf::Random(k, n), c(m, n);
  const Timing t = TimePerCall(min_seconds, [&] { c.noalias() = a * b; });
  if (c(0, 0) == 12345.0f) std::printf(" ");  // keep the product observable
  return RateOf(2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n), t);
}

// The GEMMs of one MLP training step at batch size n (784-200-200-10):
// forward W*A per layer, backward dZ*A^T per layer and W^T*dZ for layers 2, 3.
Rate MlpShapeGemmGflops(Eigen::Index n, double min_seconds) {
  const Eigen::Index s[4] = {784, 200, 200, 10};
  std::vector<Eigen::MatrixXf> w, a, z, dw, da;
  for (int l = 0; l < 3; ++l) {
    w.push_back(Eigen::MatrixXf::Random(s[l + 1], s[l]));
    a.push_back(Eigen::MatrixXf::Random(s[l], n));
    z.push_back(Eigen::MatrixXf(s[l + 1], n));
    dw.push_back(Eigen::MatrixXf(s[l + 1], s[l]));
    da.push_back(Eigen::MatrixXf(s[l], n));
  }
  double flops = 0;
  for (int l = 0; l < 3; ++l) flops += 2.0 * 2 * static_cast<double>(s[l] * s[l + 1] * n) + (l > 0 ? 2.0 * static_cast<double>(s[l] * s[l + 1] * n) : 0.0);
  const Timing t = TimePerCall(min_seconds, [&] {
    for (int l = 0; l < 3; ++l) z[l].noalias() = w[l] * a[l];
    for (int l = 2; l >= 0; --l) {
      dw[l].noalias() = z[l] * a[l].transpose();
      if (l > 0) da[l].noalias() = w[l].transpose() * z[l];
    }
  });
  return RateOf(flops, t);
}

struct Options {
  double seconds = 2.0;
  size_t cnn_examples = 1024;
  std::string fmnist_dir = FRUGAL_FMNIST_DIR;
  std::string models = "logreg,mlp,cnn";
};

struct Throughput {
  double examples_per_s = 0;      // per wall second, all threads together
  double examples_per_cpu_s = 0;  // per CPU second
  Rate gflops;
};

// Trains `clients` (each a list of example indices, one Train call per client,
// 1 epoch) on `threads` threads, each thread with its own parameter copy and
// workspace; repeats the whole set for min_seconds.
Throughput TrainClients(const Model& model, const Dataset& data, const Partition& clients, int batch_size, int threads,
                        double min_seconds) {
  const FlopCount f = model.flops_per_example();
  size_t examples_per_pass = 0;
  for (const auto& c : clients) examples_per_pass += c.size();
  std::vector<std::vector<float>> params(static_cast<size_t>(threads), std::vector<float>(model.num_params()));
  std::vector<std::unique_ptr<ModelWorkspace>> ws;
  for (int t = 0; t < threads; ++t) {
    model.InitParams(params[static_cast<size_t>(t)], 1);
    ws.push_back(model.MakeWorkspace());
  }
  const TrainConfig cfg{.epochs = 1, .batch_size = batch_size, .learning_rate = 0.01f, .seed = 1};
  auto pass = [&](int t) {
    // Thread t trains clients t, t+threads, ...: every client once per pass.
    for (size_t c = static_cast<size_t>(t); c < clients.size(); c += static_cast<size_t>(threads)) {
      auto r = Train(model, params[static_cast<size_t>(t)], data, clients[c], cfg, *ws[static_cast<size_t>(t)]);
      if (!r.ok()) {
        std::fprintf(stderr, "train failed: %s\n", r.error().ToString().c_str());
        std::exit(1);
      }
    }
  };
  auto run_pass = [&] {
    if (threads == 1) {
      pass(0);
      return;
    }
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(pass, t);
    for (auto& th : pool) th.join();
  };
  const Timing t = TimePerCall(min_seconds, run_pass);
  Throughput r;
  r.examples_per_s = static_cast<double>(examples_per_pass) / t.wall;
  r.examples_per_cpu_s = static_cast<double>(examples_per_pass) / t.cpu;
  r.gflops = RateOf(static_cast<double>(examples_per_pass) * (f.forward + f.backward), t);
  return r;
}

// One round of the Flower comparison (sim/scenarios/fmnist-logreg-c10.toml,
// dense pipeline) without the simulator around it: 10 IID clients of 6,000
// examples train logistic regression for 1 epoch at batch 32 on `threads`
// threads, then the 10k test set is evaluated split across the threads.
// Returns seconds per round (wall and CPU) and the FLOPs of one round.
struct RoundTiming {
  Timing t;
  double flops = 0;
};

RoundTiming FlowerRound(const Dataset& train, const Dataset& test, int threads, double min_seconds) {
  auto model = MakeModel("logreg");
  const Model& m = **model;
  const Partition clients = PartitionIid(train.size(), 10, 1).value();
  std::vector<float> global(m.num_params());
  m.InitParams(global, 1);
  std::vector<std::vector<float>> params(clients.size(), global);
  std::vector<std::unique_ptr<ModelWorkspace>> ws;
  for (int t = 0; t < threads; ++t) ws.push_back(m.MakeWorkspace());
  const TrainConfig cfg{.epochs = 1, .batch_size = 32, .learning_rate = 0.1f, .seed = 1};
  std::vector<uint32_t> test_rows(test.size());
  std::iota(test_rows.begin(), test_rows.end(), 0u);
  auto work = [&](int t) {
    for (size_t c = static_cast<size_t>(t); c < clients.size(); c += static_cast<size_t>(threads)) {
      params[c] = global;
      if (!Train(m, params[c], train, clients[c], cfg, *ws[static_cast<size_t>(t)]).ok()) std::exit(1);
    }
  };
  auto eval = [&](int t) {
    const size_t lo = test.size() * static_cast<size_t>(t) / static_cast<size_t>(threads);
    const size_t hi = test.size() * static_cast<size_t>(t + 1) / static_cast<size_t>(threads);
    if (!Evaluate(m, global, test, std::span(test_rows).subspan(lo, hi - lo), *ws[static_cast<size_t>(t)]).ok()) {
      std::exit(1);
    }
  };
  auto on_threads = [&](auto fn) {
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(fn, t);
    fn(0);
    for (auto& th : pool) th.join();
  };
  RoundTiming r;
  r.t = TimePerCall(min_seconds, [&] {
    on_threads(work);
    on_threads(eval);
  });
  const FlopCount f = m.flops_per_example();
  r.flops = static_cast<double>(train.size()) * (f.forward + f.backward) + static_cast<double>(test.size()) * f.forward;
  return r;
}

// Whether name is one of the comma-separated entries of list.
bool Listed(std::string_view list, std::string_view name) {
  while (!list.empty()) {
    const size_t cut = list.find(',');
    if (list.substr(0, cut) == name) return true;
    if (cut == std::string_view::npos) break;
    list.remove_prefix(cut + 1);
  }
  return false;
}

int Main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      opt.seconds = std::atof(argv[++i]);
    } else if (a == "--cnn-examples" && i + 1 < argc) {
      opt.cnn_examples = static_cast<size_t>(std::atol(argv[++i]));
    } else if (a == "--fmnist-dir" && i + 1 < argc) {
      opt.fmnist_dir = argv[++i];
    } else if (a == "--models" && i + 1 < argc) {
      opt.models = argv[++i];
    } else {
      std::fprintf(stderr, "usage: frugal-train-bench [--seconds S] [--cnn-examples N] [--fmnist-dir DIR] [--models logreg,mlp,cnn,flower-round]\n");
      return 2;
    }
  }
  auto train = LoadFashionMnist(Split::kTrain, opt.fmnist_dir);
  if (!train.ok()) {
    std::fprintf(stderr, "%s\n", train.error().ToString().c_str());
    return 1;
  }
  double load1 = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load1) != 1) load1 = -1;
    std::fclose(f);
  }
  std::printf(
      "{\"bench\":\"config\",\"eigen\":\"%d.%d.%d\",\"simd\":\"%s\",\"eigen_threads\":%d,\"seconds\":%g,"
      "\"hardware_threads\":%u,\"loadavg1_at_start\":%.2f}\n",
      EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, Eigen::SimdInstructionSetsInUse(),
      Eigen::nbThreads(), opt.seconds, std::thread::hardware_concurrency(), load1);
  const Rate sgemm1024 = SgemmGflops(1024, 1024, 1024, opt.seconds);
  std::printf("{\"bench\":\"sgemm\",\"shape\":\"1024x1024x1024\",\"gflops_wall\":%.2f,\"gflops_cpu\":%.2f}\n",
              sgemm1024.wall, sgemm1024.cpu);
  Rate mlp_shapes[2];
  const int batches[2] = {32, 10};
  for (int b = 0; b < 2; ++b) {
    mlp_shapes[b] = MlpShapeGemmGflops(batches[b], opt.seconds);
    std::printf("{\"bench\":\"sgemm\",\"shape\":\"mlp-step-batch%d\",\"gflops_wall\":%.2f,\"gflops_cpu\":%.2f}\n",
                batches[b], mlp_shapes[b].wall, mlp_shapes[b].cpu);
  }
  std::fflush(stdout);

  if (Listed(opt.models, "flower-round")) {
    auto test = LoadFashionMnist(Split::kTest, opt.fmnist_dir);
    if (!test.ok()) {
      std::fprintf(stderr, "%s\n", test.error().ToString().c_str());
      return 1;
    }
    for (int threads : {1, 2}) {
      const RoundTiming r = FlowerRound(*train, *test, threads, opt.seconds);
      const Rate g = RateOf(r.flops, r.t);
      std::printf(
          "{\"bench\":\"flower-round\",\"threads\":%d,\"seconds_per_round\":%.4f,\"cpu_seconds_per_round\":%.4f,"
          "\"gflop_per_round\":%.3f,\"gflops_wall\":%.2f,\"gflops_cpu\":%.2f,\"efficiency_vs_sgemm1024\":%.3f}\n",
          threads, r.t.wall, r.t.cpu, r.flops * 1e-9, g.wall, g.cpu, g.cpu / sgemm1024.cpu);
      std::fflush(stdout);
    }
  }

  for (const char* name : {"logreg", "mlp", "cnn"}) {
    if (!Listed(opt.models, name)) continue;
    auto model = MakeModel(name);
    const bool cnn = std::strcmp(name, "cnn") == 0;
    // Clients of 32 examples as in the simulator, IID over the training set
    // ("full": rows come from DRAM, as in a real round), or over its first 2048
    // examples ("resident": 6.4 MB that stays in cache, isolating compute).
    // The CNN, compute-bound and 30x slower per example, runs on a prefix of the full set.
    for (const char* data : {"full", "resident"}) {
      const bool resident = std::strcmp(data, "resident") == 0;
      if (cnn && resident) continue;
      const size_t pool = resident ? 2048 : train->size();
      Partition clients = PartitionIid(pool, pool / 32, 7).value();
      if (cnn) clients.resize(std::max<size_t>(1, opt.cnn_examples / 32));
      size_t examples = 0;
      for (const auto& c : clients) examples += c.size();
      for (int b = 0; b < 2; ++b) {
        for (int threads : {1, 2}) {
          const Throughput r = TrainClients(**model, *train, clients, batches[b], threads, opt.seconds);
          // Efficiency: model GFLOP per CPU second over Eigen's sgemm GFLOP per CPU second.
          std::printf(
              "{\"bench\":\"train\",\"model\":\"%s\",\"data\":\"%s\",\"batch\":%d,\"threads\":%d,\"clients\":%zu,"
              "\"examples_per_pass\":%zu,\"examples_per_s\":%.0f,\"examples_per_cpu_s\":%.0f,\"gflops_wall\":%.2f,"
              "\"gflops_cpu\":%.2f,\"efficiency_vs_sgemm1024\":%.3f,\"efficiency_vs_mlp_step_gemm\":%.3f}\n",
              name, data, batches[b], threads, clients.size(), examples, r.examples_per_s, r.examples_per_cpu_s,
              r.gflops.wall, r.gflops.cpu, r.gflops.cpu / sgemm1024.cpu, r.gflops.cpu / mlp_shapes[b].cpu);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace frugal

int main(int argc, char** argv) { return frugal::Main(argc, argv); }
