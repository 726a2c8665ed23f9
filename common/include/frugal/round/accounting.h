// Accounting for a round, the same in every front end: one ledger row per
// selected client, costed by the energy model from what the client actually
// did (FLOPs, bytes sent and received, when), and the round's record summed
// from those rows. Ledger rows keep the profiles' ids. No I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "frugal/aggregate/robust.h"
#include "frugal/energy/ledger.h"
#include "frugal/energy/profiles.h"
#include "frugal/round/record.h"

namespace frugal {

// One selected client's part in a round, as its front end observed it.
struct Participation {
  uint32_t client = 0;
  const DeviceProfile* device = nullptr;
  const RadioProfile* radio = nullptr;
  const RegionProfile* region = nullptr;
  // kParticipated: its update counted; kStraggled: it trained but its update
  // did not count (late or rejected); kDropped: it trained (part of) the task
  // and sent nothing.
  ClientOutcome outcome = ClientOutcome::kParticipated;
  double flops = 0;  // executed on the device, a drop-out's partial work included
  bool int8 = false;
  std::optional<double> measured_compute_j;
  uint64_t bytes_down = 0;             // the model payload it received
  std::optional<uint64_t> bytes_up;    // the update it sent, if it sent one
  // Secure pipeline: the SecAgg+ protocol's share of the above (bytes inside
  // bytes_up and bytes_down, the CPU seconds priced inside flops), summed
  // into the round record's protocol_* columns. Zero otherwise.
  uint64_t protocol_bytes_up = 0, protocol_bytes_down = 0;
  double protocol_cpu_s = 0;
};

class RoundAccount {
 public:
  RoundAccount(std::string run_id, uint32_t round, double utc_hour);

  // Costs one selected client's participation: a ledger row, and its bytes,
  // joules and grams added to the record (stragglers counted). Its transfer
  // schedule is modelled from its profiles: the download at 0, the upload
  // when the download (at its radio's bandwidth) and the compute (at its
  // device's sustained FLOP/s) are done, so an upload inside the download's
  // radio tail pays no second tail.
  void Add(const Participation& p);
  // Updates accepted into the aggregate.
  void SetCompleted(uint32_t completed) { record_.completed = completed; }
  // The robust rule's verdicts on the accepted updates (RoundOutcome::verdicts):
  // counted in the record, and each one with a reason (every non-kept one,
  // and kept ones in a round where the rule ran without its guarantee)
  // written into its client's ledger row as "<action>: <reason>". Call after
  // every Add().
  void SetVerdicts(std::span<const RobustVerdict> verdicts);

  RoundRecord& record() { return record_; }
  const RoundRecord& record() const { return record_; }
  std::vector<LedgerRow>& rows() { return rows_; }

 private:
  std::string run_id_;
  RoundRecord record_;
  std::vector<LedgerRow> rows_;
};

// The ledger row of a federated evaluation: the client received the model
// payload (`bytes_down`) and ran it forward over `examples` local examples,
// in int8 when `int8` (then priced at the device's joules_per_flop_int8, and
// forward_flops_per_example must be the int8 kernel's, Int8FlopsPerExample).
LedgerRow EvaluationRow(std::string_view run_id, uint32_t round, uint32_t client, const DeviceProfile& device,
                        const RadioProfile& radio, const RegionProfile& region, uint64_t bytes_down,
                        double forward_flops_per_example, uint64_t examples, double utc_hour, bool int8 = false);

}  // namespace frugal
