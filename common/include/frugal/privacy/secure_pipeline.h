// The secure pipeline's round parameters, shared by the engine, the client
// task and the front ends: the ring each client quantizes into, the SecAgg+
// graph's tolerated corrupt and dropout fractions, and the public seed that
// fixes each round's shared support (rand-k; no index is ever sent).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "frugal/codec/downlink.h"
#include "frugal/codec/ring_quant.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/status.h"

namespace frugal::privacy {

struct SecurePipelineConfig {
  // secure.{bits,clip,max_clients}; the settings' secure.bits = 0 (the default)
  // picks the smallest ring with 12 levels per client (frugal/round/settings.h).
  RingQuantConfig ring{.bits = 16, .clip = 0.1f, .max_summands = 16};
  double corrupt = 0.05;   // secure.corrupt: fraction of clients colluding with the server
  double dropout = 0.33;   // secure.dropout: fraction that may drop out (graph and threshold)
  uint64_t support_seed = 0;  // the run's; round r's support comes from SharedSupportSeed(support_seed, r)
  // The coordinator only (frugal-sim's clock places each stage itself):
  double stage_timeout_s = 30;  // secure.stage_timeout_s: deadline of stages 1, 2 and 4 (stage 3 has the round's)
  // secure.debug_dump: each client writes its ring input of a round to its
  // state directory, the coordinator the unmasked sum to its run directory
  // (secagg_input_r<round>.bin, secagg_sum_r<round>.bin: u64 little-endian
  // ring elements); for tests that check the sum. It reveals the inputs.
  bool debug_dump = false;
  // secure.run_protocol (frugal-sim only; the coordinator refuses false):
  // false skips SecAgg+'s keys, masks and unmasking and sums the survivors'
  // ring inputs directly (SecureProtocol::kSumOnly, the exact sum unmasking
  // yields) so accuracy runs at 1,000 clients a round are affordable; the
  // protocol's bytes and CPU are then not on the ledger.
  bool run_protocol = true;
  // secure.step_scale: the secure pipeline's own gain, multiplying the
  // survivors' mean before the server optimizer (for plain server SGD the
  // same step as server.learning_rate x step_scale). It is a key of the
  // pipeline, not of [server], so that a configuration's server rate keeps
  // its meaning for every pipeline while a tuned secure default survives a
  // scenario's own [server] table (docs/privacy.md, "Step scale").
  // Post-processing of the unmasked sum: no privacy cost.
  double step_scale = 1;
  // secure.identity = "ca": every client's stage-1 keys are bound to an
  // identity credential of the fleet's CA (frugal/privacy/identity.h), so the
  // server cannot pose as clients of its own making (docs/privacy.md,
  // "Identity-bound keys"); "none" (false, the default): keys are taken as
  // the server relays them. frugal-sim's clients get their credentials from a
  // simulated CA keyed by the run's seed.
  bool identity = false;

  // Guided support (secure.guided, secure.guide_rounds, secure.guide_decay,
  // secure.guide_block): a fraction `guided` of the parameters (at most
  // uplink.density) is chosen from public state, the blocks of guide_block
  // consecutive coordinates that carried the most of the last `guide_rounds`
  // broadcast steps (each step's |values| weighted by guide_decay^age;
  // frugal/round/engine.h, SecureSupportGuide); the rest of the support stays
  // rand-k from the public seed. The server sends the guide with the task
  // (EncodeSupportGuide), and its bytes count on every client's downlink.
  // 0: a pure rand-k support (no guide sent).
  double guided = 0;
  uint32_t guide_rounds = 20;
  double guide_decay = 0.9;
  uint32_t guide_block = 16;
  // secure.derive_guide: a client that keeps the steps the guide comes from
  // (Hello.history_from, the agent's history_steps) is told to derive the
  // guide itself (Task.secagg.guide_steps) instead of downloading it; the
  // support is the same either way. Off by default.
  bool derive_guide = false;
};

// The guide's blocks (ascending block numbers) from the broadcast steps
// `steps`, oldest first: the newest min(guide_rounds, |steps|) of them, each
// step's |values| weighted by guide_decay^age and summed per block of
// guide_block coordinates, the top min(guided, density) * dim / guide_block
// blocks (TopScoreCoordinates). The one computation the engine (for the
// guide it sends) and an agent (deriving it from the steps it kept) run, so
// both get the same blocks bit for bit. Pure; indices must be < dim.
std::vector<uint32_t> GuideBlocksFromSteps(std::span<const SparseUpdate> steps, uint32_t dim,
                                           const SecurePipelineConfig& cfg, double density);

// Ok when the ring and the fractions are in range; errors name the key.
Status CheckSecurePipelineConfig(const SecurePipelineConfig& cfg);

// Round `round`'s shared support for a model of `dim` parameters at uplink
// density `density`: what every selected client sends and the server sums.
Result<std::vector<uint32_t>> RoundSupport(const SecurePipelineConfig& cfg, uint32_t round, size_t dim,
                                           double density);
// The same with the round's guide (GuidedSupport: the guide plus rand-k from
// the round's public seed); the guide comes from the server, never from a client.
Result<std::vector<uint32_t>> RoundSupport(const SecurePipelineConfig& cfg, uint32_t round, size_t dim,
                                           double density, std::span<const uint32_t> guide);

// Merged format version 4's supports (codec/downlink.h StepSupportFn) for a
// client holding `history` (the steps it kept, oldest first, ending at the
// version the piece starts from): round r's support is RoundSupport with the
// guide GuideBlocksFromSteps of the guide_rounds steps before the step (from
// `history`, then the piece's steps decoded so far). The one function the
// engine (encoding) and the agent (decoding) use. Copies what it needs of
// `history`. Fails (FailedPrecondition) when fewer than guide_rounds steps
// precede a step, or cfg.guided is 0.
StepSupportFn StepSupportsFromHistory(std::span<const SparseUpdate> history, const SecurePipelineConfig& cfg,
                                      double density, uint32_t dim);

}  // namespace frugal::privacy
