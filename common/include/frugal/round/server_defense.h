// The server's own work on its trusted set before a round closes, written
// once for both front ends: FLTrust's reference update (server.robust =
// "fltrust", frugal/round/trusted.h) and the trigger scan with unlearning and
// pruning (server.trigger_scan_every, frugal/round/trigger_scan.h). The front
// end calls BeforeClose between the last Ingest and RoundEngine::CloseRound,
// AfterClose with the round's outcome, records what they say, and logs the
// notes. No I/O.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/model/model.h"
#include "frugal/round/engine.h"
#include "frugal/round/record.h"
#include "frugal/round/settings.h"
#include "frugal/round/trigger_scan.h"

namespace frugal {

// What the server's trusted-set work did in one round.
struct TriggerRoundSummary {
  TriggerColumns columns;          // rounds.csv's trigger_* columns
  std::vector<std::string> notes;  // one line per scan and per pruning, for the notes and the log
};

class ServerDefense {
 public:
  // Null when `s` needs no trusted set (neither FLTrust nor the trigger scan).
  // Errors when the trusted set cannot be drawn from `train_size` examples.
  static Result<std::unique_ptr<ServerDefense>> Create(const RunSettings& s, size_t train_size);

  // Before engine.CloseRound(): computes, on the model of engine.version(),
  // FLTrust's reference and the trigger scan's correction and frozen
  // coordinates, and hands them to the open round. `model` is the run's,
  // `train` the training set the trusted indices point into.
  Result<TriggerRoundSummary> BeforeClose(RoundEngine& engine, const Model& model, const Dataset& train,
                                          ModelWorkspace& ws);

  // After engine.CloseRound(), with its outcome; `summary` is BeforeClose's.
  // A round that missed its quorum leaves the model as it was, so it keeps
  // none of the defence's changes either: the trigger memory (the scan's
  // triggers, flags and pruned inputs) and the engine's frozen set go back to
  // what they were before BeforeClose, `summary`'s counts follow, and a note
  // says what was dropped. The memory stored with such a round therefore
  // agrees with its model (no input counted as pruned whose weights are not
  // zero), in memory and after a restart alike. Nothing to do for an applied round.
  Status AfterClose(const RoundOutcome& outcome, RoundEngine& engine, const Model& model,
                    TriggerRoundSummary& summary);

  // After a restart, once the trigger memory is restored (TriggerDefense::SetState):
  // hands `engine` the coordinates the restored pruned inputs freeze, so full
  // models sent before the next close carry their exact zeros too.
  Status Resume(RoundEngine& engine, const Model& model);

  std::span<const uint32_t> trusted() const { return trusted_; }
  // Null without the trigger scan.
  TriggerDefense* trigger() { return trigger_ ? &*trigger_ : nullptr; }
  const TriggerDefense* trigger() const { return trigger_ ? &*trigger_ : nullptr; }

  // The run summary's trigger_* metrics (empty without the scan) and every note so far.
  std::map<std::string, double> SummaryMetrics() const;
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  ServerDefense(const RunSettings& s, std::vector<uint32_t> trusted);

  bool fltrust_;
  uint64_t seed_;
  TrainConfig train_;
  std::vector<uint32_t> trusted_;
  std::optional<TriggerDefense> trigger_;
  std::vector<float> scratch_;  // TrustedUpdate's
  std::vector<std::string> notes_;
  uint32_t scans_ = 0, flags_ = 0;
  // BeforeClose's starting point, which AfterClose restores when the round misses its quorum.
  std::vector<uint8_t> memory_before_;
  std::vector<uint32_t> frozen_before_;
};

}  // namespace frugal
