// Cost of the SecAgg+ protocol per client and for the server (issue 13):
// every client of a round runs the real protocol in this process
// (LocalSecureRound: X25519, Shamir, AES-GCM, AES-CTR masks), its bytes counted
// from the encoded messages and its CPU on this thread's CPU clock. Graph
// parameters for 5% corrupt / 33% dropout. One JSON line per (clients, dropout):
// client CPU and bytes (mean per client), server CPU, and as the in-process
// baseline the plain sum of the same clients' unmasked vectors (what a server
// without secure aggregation does), with the unmasking's ratio against it.
// First, one JSON line comparing a client's key agreements with its private
// key imported once per stage (X25519Agreement, what the protocol does)
// against one import per agreement (AgreeKey), same keys, same process.
// With --identity ca (or both) every client's keys are bound to a simulated
// CA's credential (secure.identity = "ca"), its bytes and CPU in the figures.
//   frugal-secagg-cost [--length 3984] [--bits 16] [--clients 100,1000,10000] [--identity none|ca|both]
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/privacy/identity.h"
#include "frugal/privacy/secagg.h"
#include "frugal/privacy/secure_local_round.h"

namespace {

double ThreadCpu() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

int Run(uint32_t n, double dropped_fraction, uint32_t length, int bits, bool identity) {
  using namespace frugal;
  using namespace frugal::privacy;
  auto cfg = PlanSecureRound(1, 1, n, 0.05, 0.33, bits, length);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.error().ToString().c_str());
    return 1;
  }
  cfg->identity = identity;
  // secure.identity = "ca": credentials from a simulated CA, issued before the
  // round (a device's one-time enrolment, not protocol cost).
  std::vector<SecureIdentity> identities;
  if (identity) {
    auto ca = SimulatedIdentityAuthority::Create(n);
    if (!ca.ok()) return 1;
    for (uint32_t u = 0; u < n; ++u) {
      auto id = ca->Issue(u);
      if (!id.ok()) return 1;
      identities.push_back(std::move(*id));
    }
  }
  const double t0 = ThreadCpu();
  auto round = LocalSecureRound::Start(*cfg, ThreadCpu, SecureProtocol::kRun, std::move(identities));
  if (!round.ok()) {
    std::fprintf(stderr, "%s\n", round.error().ToString().c_str());
    return 1;
  }
  Rng rng(n);
  std::vector<std::vector<uint64_t>> inputs(n, std::vector<uint64_t>(length));
  for (auto& in : inputs) {
    for (auto& v : in) v = rng.NextU64() & RingMask(bits);
  }
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  rng.Shuffle(std::span<uint32_t>(order));
  const auto drop = static_cast<uint32_t>(dropped_fraction * n);
  std::vector<uint32_t> delivered(order.begin() + drop, order.end());
  std::sort(delivered.begin(), delivered.end());
  for (uint32_t u : delivered) {
    if (auto m = (*round)->MaskedInput(u, inputs[u]); !m.ok()) {
      std::fprintf(stderr, "%s\n", m.error().ToString().c_str());
      return 1;
    }
  }
  auto sum = (*round)->Finish(delivered);
  if (!sum.ok()) {
    std::fprintf(stderr, "%s\n", sum.error().ToString().c_str());
    return 1;
  }
  const double wall_cpu = ThreadCpu() - t0;
  // Baseline: the plain sum of the same survivors' vectors, and a check of the result.
  const double b0 = ThreadCpu();
  std::vector<uint64_t> plain(length, 0);
  for (uint32_t u : delivered) {
    for (size_t i = 0; i < length; ++i) plain[i] = (plain[i] + inputs[u][i]) & RingMask(bits);
  }
  const double plain_s = ThreadCpu() - b0;
  if (plain != sum->sum) {
    std::fprintf(stderr, "unmasked sum differs from the plain sum\n");
    return 1;
  }
  double cpu = 0, up = 0, down = 0, masked = 0, stage45 = 0, sign = 0, check_up = 0, check_down = 0;
  for (uint32_t u : delivered) {
    const SecureClientCost& c = (*round)->cost(u);
    cpu += c.setup_cpu_s + c.mask_cpu_s + c.unmask_cpu_s;
    stage45 += c.unmask_cpu_s;
    sign += c.check_sign_cpu_s;
    check_up += static_cast<double>(c.check_bytes_up);
    check_down += static_cast<double>(c.check_bytes_down);
    up += static_cast<double>(c.bytes_up);
    down += static_cast<double>(c.bytes_down);
    masked += static_cast<double>(c.masked_bytes);
  }
  const double m = static_cast<double>(delivered.size());
  std::printf(
      "{\"identity\": %d, \"clients\": %u, \"degree\": %u, \"threshold\": %u, \"dropped\": %u, \"length\": %u, \"bits\": %d, "
      "\"client_cpu_s\": %.6f, \"client_bytes_up\": %.0f, \"client_bytes_down\": %.0f, \"masked_input_bytes\": %.0f, "
      "\"server_cpu_s\": %.4f, \"server_unmask_cpu_s\": %.4f, \"plain_sum_cpu_s\": %.6f, "
      "\"unmask_over_plain_sum\": %.1f, \"total_cpu_s\": %.2f, \"client_stage45_cpu_s\": %.6f, "
      "\"client_sign_cpu_s\": %.6f, \"check_bytes_up\": %.0f, \"check_bytes_down\": %.0f, "
      "\"server_check_cpu_s\": %.4f}\n",
      identity ? 1 : 0, n, cfg->degree, cfg->threshold, drop, length, bits, cpu / m, up / m, down / m, masked / m, (*round)->server_cpu_s(),
      (*round)->server_unmask_cpu_s(), plain_s, (*round)->server_unmask_cpu_s() / plain_s, wall_cpu, stage45 / m,
      sign / m, check_up / m, check_down / m, (*round)->server_check_cpu_s());
  std::fflush(stdout);
  return 0;
}

// k = 72 agreements (the degree at 1,000 clients a round), repeated: CPU per
// agreement with one import per agreement and with one per stage.
int CompareAgreement() {
  using namespace frugal::privacy;
  constexpr int kPeers = 72, kReps = 20;
  auto mine = GenerateX25519KeyPair();
  if (!mine.ok()) return 1;
  std::vector<Key256> peers;
  for (int i = 0; i < kPeers; ++i) {
    auto p = GenerateX25519KeyPair();
    if (!p.ok()) return 1;
    peers.push_back(p->public_key);
  }
  const auto info = PairKeyInfo("mask", 1, 1, 0, 1);
  uint8_t fold = 0;  // keeps the results live
  double t0 = ThreadCpu();
  for (int r = 0; r < kReps; ++r) {
    for (const Key256& p : peers) {
      auto k = AgreeKey(mine->private_key, p, info);
      if (!k.ok()) return 1;
      fold ^= (*k)[0];
    }
  }
  const double per_call = (ThreadCpu() - t0) / (kReps * kPeers);
  t0 = ThreadCpu();
  for (int r = 0; r < kReps; ++r) {
    auto loaded = X25519Agreement::Load(mine->private_key);
    if (!loaded.ok()) return 1;
    for (const Key256& p : peers) {
      auto k = loaded->Agree(p, info);
      if (!k.ok()) return 1;
      fold ^= (*k)[0];
    }
  }
  const double per_stage = (ThreadCpu() - t0) / (kReps * kPeers);
  std::printf("{\"agreement\": {\"peers\": %d, \"import_per_agreement_us\": %.1f, \"import_per_stage_us\": %.1f, "
              "\"ratio\": %.2f, \"fold\": %u}}\n",
              kPeers, 1e6 * per_call, 1e6 * per_stage, per_call / per_stage, fold);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t length = 3984;  // 2% of the 2NN's 199,210 parameters
  int bits = 16;
  std::vector<uint32_t> sizes = {100, 1000, 10000};
  std::vector<bool> identity_modes = {false};
  std::vector<double> dropped = {0.0, 0.33};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--length") {
      length = static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    } else if (a == "--bits") {
      bits = std::atoi(argv[i + 1]);
    } else if (a == "--clients") {
      sizes.clear();
      std::stringstream ss(argv[i + 1]);
      for (std::string s; std::getline(ss, s, ',');) sizes.push_back(static_cast<uint32_t>(std::stoul(s)));
    } else if (a == "--dropped") {
      dropped.clear();
      std::stringstream ss(argv[i + 1]);
      for (std::string s; std::getline(ss, s, ',');) {
        const double d = std::strtod(s.c_str(), nullptr);
        if (!(d >= 0 && d < 1)) {
          std::fprintf(stderr, "--dropped: %s is not a fraction in [0, 1)\n", s.c_str());
          return 2;
        }
        dropped.push_back(d);
      }
    } else if (a == "--identity") {
      const std::string v = argv[i + 1];
      identity_modes = v == "both" ? std::vector<bool>{false, true} : std::vector<bool>{v == "ca"};
    } else {
      std::fprintf(stderr, "usage: %s [--length L] [--bits B] [--clients 100,1000,10000] [--identity none|ca|both]\n"
                   "       [--dropped 0,0.33]\n",
                   argv[0]);
      return 2;
    }
  }
  if (CompareAgreement() != 0) return 1;
  for (uint32_t n : sizes) {
    for (double d : dropped) {
      for (bool identity : identity_modes) {
        if (Run(n, d, length, bits, identity) != 0) return 1;
      }
    }
  }
  return 0;
}
