// One secure-aggregation round as both front ends run it, I/O-free. The server
// side (PlanSecureRoundFor, SecureRoundServer) places the round's selected
// clients on the SecAgg+ graph, relays the stage messages, keeps who delivered
// what in which stage and the bytes each client moved, and returns the
// unmasked ring sum for the engine; the client side (SecureClientInput) turns
// a client's update into its ring input on the round's shared support. The
// simulator (through LocalSecureRound) and the coordinator call these; only
// the transport differs. Not thread-safe: one caller per object.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "frugal/codec/ring_quant.h"
#include "frugal/core/status.h"
#include "frugal/privacy/secure_aggregation.h"
#include "frugal/privacy/secure_pipeline.h"

namespace frugal::privacy {

// The round's protocol parameters and each client's position on the graph.
struct SecureRoundPlan {
  SecureRoundConfig config;
  std::vector<uint64_t> clients;    // the selected clients, in the front end's order
  std::vector<uint32_t> positions;  // positions[i]: clients[i]'s position
  // identities[i]: the name the front end authenticated for clients[i] (its
  // mTLS CN; frugal-sim: the decimal id), which its identity credential must
  // carry; empty: not checked.
  std::vector<std::string> identities;
};

// Plans round `round` for `clients` (distinct ids) over a support of
// `support_size` entries: PlanSecureRound with the pipeline's fractions and
// ring, positions a shuffle seeded by (run_seed, round), so a replayed run
// places clients as the original did. Errors as PlanSecureRound, or duplicate ids.
Result<SecureRoundPlan> PlanSecureRoundFor(const SecurePipelineConfig& pipeline, uint64_t run_seed,
                                           uint64_t session_id, uint32_t round, std::span<const uint64_t> clients,
                                           uint32_t support_size);

// The stochastic-rounding seed of client `client`'s ring input in `round`.
uint64_t SecureRoundingSeed(uint64_t run_seed, uint32_t round, uint64_t client);

// A client's ring input for the round: its update plus its error-feedback
// residual, clipped and stochastically rounded into Z_2^bits on the support
// (RingQuantize with SecureRoundingSeed). The residual (may be empty) keeps
// what was not sent. The one ring-quantization call of both front ends.
// Under distributed DP (ring.noise_mu > 0) the client's Skellam noise comes
// from the AES-CTR stream under `noise_key` (RAND_bytes on a device; the
// simulator's SeededNoiseKey), required then.
Result<std::vector<uint64_t>> SecureClientInput(std::span<const float> update, std::span<const uint32_t> support,
                                                const RingQuantConfig& ring, uint64_t run_seed, uint32_t round,
                                                uint64_t client, std::span<float> residual,
                                                const NoiseKey* noise_key = nullptr);

// What one client spent on the protocol, beyond its training. Bytes are the
// encoded messages; the CPU fields are filled by whoever can time the client
// (LocalSecureRound), zero on the server.
struct SecureClientCost {
  uint64_t bytes_up = 0;        // advertise + share keys + masked input + signature + unmask response, as encoded
  uint64_t bytes_down = 0;      // key directory + share inbox + survivor list + signatures, as encoded
  uint64_t setup_bytes_up = 0, setup_bytes_down = 0;  // the part before the masked input (stages 1-2)
  uint64_t masked_bytes = 0;    // the masked input message alone
  double setup_cpu_s = 0;       // stages 1-2 (keys, Shamir, sealing)
  double mask_cpu_s = 0;        // stage 3 (opening shares, expanding masks)
  double unmask_cpu_s = 0;      // stages 4-5 (signing and checking the survivor list, revealing shares)
  // The consistency check alone: the signature up, the survivor list and the
  // neighbours' signatures down (as encoded), and of unmask_cpu_s the CPU of
  // signing the list (the verifications are in Unmask: timed with it).
  uint64_t check_bytes_up = 0, check_bytes_down = 0;
  double check_sign_cpu_s = 0;
};

// The unmasked sum with the clients' ids.
struct SecureSum {
  std::vector<uint64_t> sum;        // the survivors' inputs summed in Z_2^bits
  std::vector<uint64_t> survivors;  // ids whose inputs are in the sum, ascending
  std::vector<uint64_t> dropped;    // ids that shared keys but sent no input, ascending
};

// The server's side of one round. Stages are numbered as the protocol's:
// 1 advertise keys, 2 share keys, 3 masked input, 4 consistency check
// (survivor-list signatures), 5 unmasking; stage() is the
// stage whose client messages are accepted now (0 once finished or failed).
class SecureRoundServer {
 public:
  // `identity_ca`: the fleet CA's key, to verify each advertisement's identity
  // before relaying it (SecureAggServer::Create).
  static Result<SecureRoundServer> Open(const SecureRoundPlan& plan,
                                        std::optional<P256PublicKey> identity_ca = std::nullopt);

  const SecureRoundConfig& config() const { return server_.config(); }
  uint32_t round() const { return server_.config().round; }
  int stage() const { return stage_; }
  std::optional<uint32_t> PositionOf(uint64_t client) const;

  // One client message of stage `stage` for round `round`. Refused, with the
  // state unchanged and an error naming the client, round and stage, when the
  // round is not the open one, the client is not in the round, or the stage is
  // not the open one (FailedPrecondition, checked in that order), the client already left the protocol or
  // delivered this stage (FailedPrecondition), the message exceeds the stage's
  // size bound (InvalidArgument), or the protocol refuses it (as SecureAggServer).
  Status Receive(uint64_t client, uint32_t round, uint32_t stage, std::span<const uint8_t> bytes);
  // The client is gone (its connection closed): the open stage stops waiting for it.
  void Drop(uint64_t client);
  // Every client still awaited in the open stage has delivered or dropped.
  bool StageComplete() const;
  // Closes stage 1, 2, 3 or 4 (at its deadline or when complete): the next
  // message for each client still in the protocol, by id. A failed round
  // (FailedPrecondition: fewer than t + 1 left) ends the protocol (stage() = 0).
  Result<std::map<uint64_t, std::vector<uint8_t>>> CloseStage();
  // Closes stage 5 and unmasks. FailedPrecondition as SecureAggServer::Finish.
  Result<SecureSum> Finish();

  // Bytes client `client` moved so far (zero for an unknown id).
  SecureClientCost cost(uint64_t client) const;
  // Clients that delivered stage `stage` (1-5), ascending ids.
  std::vector<uint64_t> Delivered(uint32_t stage) const;
  // Largest message the server accepts in stage `stage` (1-5).
  size_t MaxMessageBytes(uint32_t stage) const;

 private:
  SecureRoundServer(SecureAggServer server, const SecureRoundPlan& plan);

  SecureAggServer server_;
  std::map<uint64_t, uint32_t> position_;
  std::vector<uint64_t> client_at_;             // by position
  std::vector<std::string> identity_at_;        // by position (empty: not checked)
  int stage_ = 1;
  std::set<uint32_t> awaited_;                  // positions the open stage waits for
  std::vector<std::set<uint32_t>> delivered_;   // [stage 1..5]: positions that delivered it
  std::vector<SecureClientCost> costs_;         // by position
};

}  // namespace frugal::privacy
