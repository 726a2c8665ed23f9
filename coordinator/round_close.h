// The heavy half of closing a round, the part that may run off the service's
// I/O thread: in the secure pipeline SecAgg+'s unmasking and the sum's hand-over
// to the engine, the server's work on its trusted set (FLTrust's reference, the
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
#include "frugal/privacy/secure_round.h"
#include "frugal/round/engine.h"
#include "frugal/round/server_defense.h"
#include "frugal/train/trainer.h"

namespace frugal::coordinator {

// What the close work may use. While it runs it owns *engine, *ws, *defense
// and *secure outright (the driver's thread touches none of them until it has
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
  // Secure pipeline, stage 5 over (all unmask responses in, or its deadline):
  // the round's protocol, to unmask its sum (SecureRoundServer::Finish) and
  // hand it to the engine (IngestSecureSum) before the close.
  // Null: no unmasking (another pipeline, or a protocol that already ended).
  privacy::SecureRoundServer* secure = nullptr;
  bool keep_secure_sum = false;  // secure.debug_dump: the unmasked sum comes back for its file
  uint32_t min_quorum = 1;
  bool evaluate = false;       // evaluate the released model (eval.every, the last round, the first close)
  bool evaluate_int8 = false;  // eval.int8, with it
  const DistillSettings* distill = nullptr;  // non-null: distil the released model (after the last round)
  uint64_t seed = 0;           // the run's, for distillation
};

// SecAgg+'s unmasking, done at the start of the close work. A failure here is
// the protocol's, not the service's: the round closes with what the engine has
// (no secure sum), as a round whose protocol failed in an earlier stage.
struct SecureUnmaskResult {
  Status finished = OkStatus();  // SecureRoundServer::Finish: the unmasking
  Status ingested = OkStatus();  // RoundEngine::IngestSecureSum, when the unmasking succeeded
  privacy::SecureSum sum;        // survivors and dropped; `sum` itself only with keep_secure_sum
  double cpu_s = 0;              // Finish's CPU seconds, on the thread that ran it
};

// What it did; `status` carries the first failure, with what was being done.
struct RoundCloseResult {
  Status status = OkStatus();
  std::optional<RoundOutcome> outcome;
  TriggerRoundSummary defended;
  // CPU seconds of the trusted-set work and the aggregation, on the thread
  // that ran them (the server's cost on the ledger; evaluation is not in it).
  double cpu_s = 0;
  std::optional<SecureUnmaskResult> unmasked;  // when given a secure protocol to unmask
  std::optional<EvalResult> eval;           // when asked to evaluate
  double int8_accuracy = -1;                // with evaluate_int8: -1 when the model has no int8 kernel
  std::optional<StudentReport> student;     // when asked to distil
};

// Runs the steps in the order the round needs them: the secure sum's
// unmasking and IngestSecureSum, BeforeClose, the engine's CloseRound,
// AfterClose (a round below quorum keeps none of the defence's changes), then
// evaluation and distillation of the released model.
// Thread-safe only in the sense of RoundCloseInput: one call at a time per engine.
RoundCloseResult RunRoundClose(const RoundCloseInput& in);

}  // namespace frugal::coordinator
