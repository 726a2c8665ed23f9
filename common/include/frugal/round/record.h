// What one finished round amounts to, all selected clients together: the row
// of rounds.csv. Built by RoundAccount in both front ends.
#pragma once

#include <cstdint>

namespace frugal {

// What the trigger scan did in a round (server.trigger_scan_every,
// frugal/round/server_defense.h): whether a scan ran, the class it flagged
// (-1: none), the flagged class's anomaly index (else the largest; 0 without
// a scan), the triggers remembered after the round, whether unlearning
// corrected the round's step (0/1), and the inputs pruned so far. All 0
// (flagged -1) when the scan is off.
struct TriggerColumns {
  uint32_t scanned = 0;
  int32_t flagged = -1;
  double anomaly = 0;
  uint32_t known = 0, unlearnt = 0, pruned = 0;
};

// Round numbers start at 1, so that `round` reads as "rounds run so far".
struct RoundRecord {
  uint32_t round = 0;
  double accuracy = 0, loss = 0;
  uint64_t bytes_up = 0, bytes_down = 0;  // this round, all clients, measured encoded bytes
  // This round, all selected clients (incl. stragglers' wasted energy).
  double joules_compute = 0, joules_radio = 0, gco2e = 0;
  uint32_t selected = 0, completed = 0, stragglers = 0;
  double virtual_seconds = 0, wall_seconds = 0;
  // Hours since a UTC midnight when the round opened: the hour its energy is
  // priced at. A replay runs each round at the hour the original did.
  double utc_hour = 0;
  // Robust aggregation (server.robust): accepted updates the rule clipped,
  // down-weighted or rejected (the ledger says which and why).
  uint32_t robust_clipped = 0, robust_downweighted = 0, robust_rejected = 0;
  // The simulator's backdoor attack (attack.kind = "backdoor"): the fraction
  // of triggered test images (true label not the target) classified as the
  // target label by the evaluated model. -1: not measured.
  double backdoor_success = -1;
  // Differential privacy (privacy.mode): the (ε, δ) spent through this round,
  // by the run's accountant. -1: the run has no DP.
  double dp_epsilon = -1, dp_delta = -1;
  // eval.int8: the accuracy of the released model quantized to int8
  // (frugal/model/int8.h) on the same test examples. -1: not measured.
  double accuracy_int8 = -1;
  // Secure pipeline (pipeline = "secure"): what the SecAgg+ protocol cost the
  // round's clients, already inside bytes_up, bytes_down and joules_compute.
  // Bytes are every protocol message as encoded, the masked input included;
  // CPU is the clients' protocol work of all four stages (measured thread CPU
  // seconds). Zero for the other pipelines. protocol_cpu_seconds = -1: the
  // protocol was not run (frugal-sim's secure.run_protocol = false), the three
  // columns empty in rounds.csv.
  uint64_t protocol_bytes_up = 0, protocol_bytes_down = 0;
  double protocol_cpu_seconds = 0;
  TriggerColumns trigger{};  // the trigger_* columns
  // Secure pipeline, frugal-sim only (it holds every client's ring input;
  // SecAgg+'s server cannot count them): the support entries whose true sum
  // of the survivors' levels left the ring's centered range, so that the
  // decoded sum wrapped (nonzero only with secure.modular_clip), and those
  // that a ring one bit smaller would have wrapped (frugal/codec/ring_quant.h,
  // CountRingWraps). -1: not counted (other pipelines, the coordinator),
  // the two columns empty in rounds.csv.
  int64_t ring_wraps = -1, ring_wraps_one_bit_less = -1;
};

}  // namespace frugal
