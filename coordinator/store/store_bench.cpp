// frugal-store-bench: measures the state store on this machine's disk — the
// latency of one round commit (one fsynced transaction), the cost of Open on
// an existing file (PRAGMA quick_check reads every page) and of LoadRun.
// Usage: frugal-store-bench [dim] [rounds] [keep_versions] [path]; dim defaults
// to the parameter count of the project's 2NN (784-200-200-10, 199,210).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "frugal/coordinator/store.h"
#include "frugal/core/random.h"
#include "frugal/model/model.h"

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int Fail(const frugal::Error& e) {
  std::fprintf(stderr, "frugal-store-bench: %s\n", e.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using frugal::coordinator::RoundCommit;
  using frugal::coordinator::Store;
  using frugal::coordinator::StoreOptions;
  auto two_nn = frugal::MakeModel("2nn");
  if (!two_nn.ok()) return Fail(two_nn.error());
  const size_t dim = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : (*two_nn)->num_params();
  const uint32_t rounds = argc > 2 ? static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10)) : 100;
  const uint32_t keep = argc > 3 ? static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)) : 64;
  const std::string path = argc > 4 ? argv[4] : "frugal-store-bench.db";
  if (dim == 0 || rounds == 0 || keep == 0) {
    std::fprintf(stderr, "usage: frugal-store-bench [dim>0] [rounds>0] [keep_versions>0] [path]\n");
    return 2;
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);

  frugal::Rng rng(1);
  std::vector<float> model(dim);
  for (float& x : model) x = static_cast<float>(rng.Normal());
  std::vector<double> commit_ms;
  {
    auto opened = Store::Open(path, StoreOptions{.keep_versions = keep});
    if (!opened.ok()) return Fail(opened.error());
    Store& store = **opened;
    if (auto s = store.CreateRun("bench", "bench", model); !s.ok()) return Fail(s.error());
    for (uint32_t round = 1; round <= rounds; ++round) {
      RoundCommit c;
      c.run_id = "bench";
      c.round = round;
      c.new_version = round + 1;
      c.applied = true;
      for (size_t i = 0; i < dim; i += 97) model[i] += 0.01f;
      c.model = model;
      c.step_payload.assign(dim / 8, static_cast<uint8_t>(round));  // about a 1 % top-k step
      c.engine_state.assign(dim * 4, static_cast<uint8_t>(round));  // one fp32 residual
      for (uint64_t k = 0; k < 10; ++k) {
        frugal::LedgerRow row;
        row.round = round;
        row.client_id = rng.UniformInt(1000);
        row.device = "pixel6";
        row.radio = "wifi";
        row.region = "DE";
        c.ledger_rows.push_back(row);
        c.client_versions.emplace_back(row.client_id, round + 1);
      }
      const auto t0 = Clock::now();
      const frugal::Status s = store.CommitRound(c);
      const auto t1 = Clock::now();
      if (!s.ok()) return Fail(s.error());
      commit_ms.push_back(Ms(t0, t1));
    }
  }
  const auto t0 = Clock::now();
  auto reopened = Store::Open(path, StoreOptions{.keep_versions = keep});
  const auto t1 = Clock::now();
  if (!reopened.ok()) return Fail(reopened.error());
  auto state = (*reopened)->LoadRun("bench");
  const auto t2 = Clock::now();
  if (!state.ok()) return Fail(state.error());

  std::sort(commit_ms.begin(), commit_ms.end());
  const auto pct = [&](double q) {
    return commit_ms[std::min(commit_ms.size() - 1, static_cast<size_t>(q * commit_ms.size()))];
  };
  std::printf("dim %zu, %u rounds, keep %u: file %.1f MiB\n", dim, rounds, keep,
              std::filesystem::file_size(path) / 1048576.0);
  std::printf("commit ms: median %.2f  p90 %.2f  max %.2f\n", pct(0.5), pct(0.9), commit_ms.back());
  std::printf("reopen (Open with quick_check) %.2f ms, LoadRun %.2f ms (last round %u)\n",
              Ms(t0, t1), Ms(t1, t2), (*state)->last_round);
  return 0;
}
