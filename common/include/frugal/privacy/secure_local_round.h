// One SecAgg+ round with every party in this process: the simulator's way of
// running the real protocol (real keys, shares, AEAD and masks) for a round's
// selected clients, and a test harness. It moves the encoded messages between
// SecureAggClient and the coordinator's SecureRoundServer (parties are named by
// their positions), which counts each client's bytes from those messages, and times each party's work with a CPU clock the caller injects
// (a thread CPU clock in the simulator), so the core does no I/O.
// SecureProtocol::kSumOnly (the simulator's secure.run_protocol = false) skips
// the key agreement, masking and unmasking and sums the survivors' ring inputs
// directly: the exact mod-2^bits sum unmasking yields, for accuracy runs that
// cannot afford the protocol's CPU; its bytes and CPU are then not counted.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/privacy/secure_aggregation.h"
#include "frugal/privacy/secure_round.h"

namespace frugal::privacy {

// kRun: the real protocol. kSumOnly: the survivors' inputs summed in the ring
// without keys, masks or shares; the same sum, inputs, survivors, dropped
// clients and failed rounds (too few survivors, or a survivor or dropped
// client with fewer than t surviving neighbours to rebuild its seed or key).
enum class SecureProtocol { kRun, kSumOnly };

class LocalSecureRound {
 public:
  using CpuClock = std::function<double()>;  // seconds of CPU used by the calling thread

  // Runs stages 1-2 (advertise keys, share keys) for all cfg.clients clients
  // (nothing under kSumOnly). Errors: a config ValidateSecureRoundConfig
  // refuses, or a protocol failure.
  // `identities` (by position, or empty): each client's SecureIdentity when
  // keys are bound to identities (cfg.identity); the server then checks every
  // advertisement under identities[0].ca_public and against the client's name.
  // Issuing them is the device's one-time enrolment, not timed here.
  static Result<std::unique_ptr<LocalSecureRound>> Start(const SecureRoundConfig& cfg, CpuClock cpu,
                                                         SecureProtocol protocol = SecureProtocol::kRun,
                                                         std::vector<SecureIdentity> identities = {});

  // Stage 3 for client `position`: masks `input` (cfg.length ring elements)
  // and returns the kMaskedInput message (its size is what goes up; under
  // kSumOnly the same message with the input unmasked, so the same size).
  // Distinct positions may call concurrently (each touches only its own client).
  Result<std::vector<uint8_t>> MaskedInput(uint32_t position, std::span<const uint64_t> input);

  // Delivers the masked inputs of `delivered` (positions whose message reached
  // the server before its deadline; the others dropped), runs the consistency
  // check (every survivor signs the survivor list) and unmasking with every
  // survivor answering, and returns the unmasked sum.
  Result<SecureAggregate> Finish(std::span<const uint32_t> delivered);

  const SecureRoundConfig& config() const { return cfg_; }
  bool runs_protocol() const { return server_.has_value(); }
  // Bytes as the server counted them, CPU as this process timed it. Under
  // kSumOnly only the masked input's bytes (the upload), no protocol cost.
  SecureClientCost cost(uint32_t position) const;
  double server_cpu_s() const { return server_cpu_s_; }  // every server stage, unmasking included
  double server_unmask_cpu_s() const { return server_unmask_cpu_s_; }  // Finish's reconstruction and unmasking
  // The consistency check: verifying the survivors' signatures and relaying them.
  double server_check_cpu_s() const { return server_check_cpu_s_; }

 private:
  LocalSecureRound(const SecureRoundConfig& cfg, CpuClock cpu, std::optional<SecureRoundServer> server)
      : cfg_(cfg), cpu_(std::move(cpu)), server_(std::move(server)) {}
  Result<SecureAggregate> SumOnly(std::span<const uint32_t> delivered) const;

  SecureRoundConfig cfg_;
  CpuClock cpu_;
  std::optional<SecureRoundServer> server_;  // empty under kSumOnly
  std::vector<SecureAggClient> clients_;
  std::vector<std::vector<uint8_t>> inboxes_;   // by position (empty: dropped by the server)
  std::vector<std::vector<uint8_t>> masked_;    // by position, set by MaskedInput
  std::vector<SecureClientCost> costs_;          // by position: the CPU fields
  double server_cpu_s_ = 0, server_unmask_cpu_s_ = 0, server_check_cpu_s_ = 0;
};

}  // namespace frugal::privacy
