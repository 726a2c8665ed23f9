#include "frugal/round/accounting.h"

#include <utility>

#include "frugal/energy/model.h"

namespace frugal {

RoundAccount::RoundAccount(std::string run_id, uint32_t round, double utc_hour) : run_id_(std::move(run_id)) {
  record_.round = round;
  record_.utc_hour = utc_hour;
}

void RoundAccount::Add(const Participation& p) {
  Transfer transfers[2] = {{0.0, p.bytes_down, Direction::kDown}, {}};
  size_t n = 1;
  if (p.bytes_up) {
    const double upload_start_s =
        TransferSeconds(*p.radio, p.bytes_down, Direction::kDown) + ComputeSeconds(*p.device, p.flops);
    transfers[n++] = {upload_start_s, *p.bytes_up, Direction::kUp};
  }
  ClientRoundUsage usage;
  usage.round = record_.round;
  usage.client_id = p.client;
  usage.flops = p.flops;
  usage.int8 = p.int8;
  usage.transfers = std::span<const Transfer>(transfers, n);
  usage.utc_hour = record_.utc_hour;
  usage.outcome = p.outcome;
  usage.measured_compute_j = p.measured_compute_j;
  LedgerRow row = MakeLedgerRow(run_id_, *p.device, *p.radio, *p.region, usage);
  ++record_.selected;
  if (p.outcome == ClientOutcome::kStraggled) ++record_.stragglers;
  record_.bytes_up += row.bytes_up;
  record_.bytes_down += row.bytes_down;
  record_.joules_compute += row.compute_j;
  record_.joules_radio += row.radio_j;
  record_.gco2e += row.gco2e;
  record_.protocol_bytes_up += p.protocol_bytes_up;
  record_.protocol_bytes_down += p.protocol_bytes_down;
  record_.protocol_cpu_seconds += p.protocol_cpu_s;
  rows_.push_back(std::move(row));
}

void RoundAccount::SetVerdicts(std::span<const RobustVerdict> verdicts) {
  for (const RobustVerdict& v : verdicts) {
    record_.robust_clipped += v.action == RobustAction::kClipped;
    record_.robust_downweighted += v.action == RobustAction::kDownweighted;
    record_.robust_rejected += v.action == RobustAction::kRejected;
    // A kept update has a reason only when the rule ran without its guarantee.
    if (v.action == RobustAction::kKept && v.reason.empty()) continue;
    for (LedgerRow& row : rows_) {
      if (row.client_id == v.client) row.robust = std::string(RobustActionName(v.action)) + ": " + v.reason;
    }
  }
}

LedgerRow EvaluationRow(std::string_view run_id, uint32_t round, uint32_t client, const DeviceProfile& device,
                        const RadioProfile& radio, const RegionProfile& region, uint64_t bytes_down,
                        double forward_flops_per_example, uint64_t examples, double utc_hour, bool int8) {
  const Transfer download{0.0, bytes_down, Direction::kDown};
  ClientRoundUsage usage;
  usage.round = round;
  usage.client_id = client;
  usage.flops = forward_flops_per_example * static_cast<double>(examples);
  usage.int8 = int8;
  usage.transfers = std::span(&download, 1);
  usage.utc_hour = utc_hour;
  usage.outcome = ClientOutcome::kEvaluated;
  return MakeLedgerRow(run_id, device, radio, region, usage);
}

}  // namespace frugal
