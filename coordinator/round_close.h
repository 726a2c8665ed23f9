// The heavy half of closing a round, the part that may run off the service's
// I/O thread: the server's work on its trusted set (FLTrust's reference, the
// trigger scan), the robust aggregation and server step (RoundEngine::
// CloseRound), the released model's evaluation on the test set, and, after
// the last round, distillation. Private to coordinator/. No I/O: the result
// goes back to the RoundDriver, which costs, commits and announces the round
// on its own thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/model/model.h"
#include "frugal/model/release_models.h"
#include "frugal/round/engine.h"
#include "frugal/round/server_defense.h"
#include "frugal/train/trainer.h"

namespace frugal::coordinator {

// What the close work may use. While it runs it owns *engine, *ws and
// *defense outright (the driver's thread touches none of them until it has
// the result back); model, the data sets and eval_rows are only read.
struct RoundCloseInput {
  uint32_t round = 0;
  RoundEngine* engine = nullptr;
  const Model* model = nullptr;
  ModelWorkspace* ws = nullptr;
  ServerDefense* defense = nullptr;  // null: no trusted-set work
  const Dataset* train = nullptr;    // the trusted set's and the distillation pool's source; may be null
  const Dataset* test = nullptr;
  std::span<const uint32_t> eval_rows;
  uint32_t min_quorum = 1;
  bool evaluate = false;       // evaluate the released model (eval.every, the last round, the first close)
  bool evaluate_int8 = false;  // eval.int8, with it
  const DistillSettings* distill = nullptr;  // non-null: distil the released model (after the last round)
  uint64_t seed = 0;           // the run's, for distillation
};

// What it did; `status` carries the first failure, with what was being done.
struct RoundCloseResult {
  Status status = OkStatus();
  std::optional<RoundOutcome> outcome;
  TriggerRoundSummary defended;
  // CPU seconds of the trusted-set work and the aggregation, on the thread
  // that ran them (the server's cost on the ledger; evaluation is not in it).
  double cpu_s = 0;
  std::optional<EvalResult> eval;           // when asked to evaluate
  double int8_accuracy = -1;                // with evaluate_int8: -1 when the model has no int8 kernel
  std::optional<StudentReport> student;     // when asked to distil
};

// Runs the steps in the order the round needs them: BeforeClose, the
// engine's CloseRound, AfterClose (a round below quorum keeps none of the
// defence's changes), then evaluation and distillation of the released model.
// Thread-safe only in the sense of RoundCloseInput: one call at a time per engine.
RoundCloseResult RunRoundClose(const RoundCloseInput& in);

}  // namespace frugal::coordinator
