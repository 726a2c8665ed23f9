#include "frugal/round/server_defense.h"

#include <algorithm>
#include <string>
#include <utility>

#include "frugal/round/trusted.h"

namespace frugal {

Result<std::unique_ptr<ServerDefense>> ServerDefense::Create(const RunSettings& s, size_t train_size) {
  if (s.engine.robust.rule != RobustRule::kFlTrust && s.trigger_scan.every == 0) {
    return std::unique_ptr<ServerDefense>();
  }
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> trusted, TrustedIndices(s.seed, train_size, s.trusted_examples));
  return std::unique_ptr<ServerDefense>(new ServerDefense(s, std::move(trusted)));
}

ServerDefense::ServerDefense(const RunSettings& s, std::vector<uint32_t> trusted)
    : fltrust_(s.engine.robust.rule == RobustRule::kFlTrust),
      seed_(s.seed),
      train_(s.task.train),
      trusted_(std::move(trusted)) {
  if (s.trigger_scan.every > 0) trigger_.emplace(s.trigger_scan);
}

Result<TriggerRoundSummary> ServerDefense::BeforeClose(RoundEngine& engine, const Model& model, const Dataset& train,
                                                       ModelWorkspace& ws) {
  TriggerRoundSummary out;
  const uint32_t round = engine.round();
  if (fltrust_) {
    FRUGAL_ASSIGN_OR_RETURN(SparseUpdate reference, TrustedUpdate(model, engine.global_model(), train, trusted_,
                                                                  train_, seed_, round, ws, scratch_));
    FRUGAL_RETURN_IF_ERROR(engine.SetReference(std::move(reference)));
  }
  if (!trigger_) return out;
  memory_before_ = trigger_->State();
  frozen_before_.assign(engine.server_frozen().begin(), engine.server_frozen().end());
  FRUGAL_ASSIGN_OR_RETURN(TriggerRoundResult scan,
                          trigger_->Round(round, model, engine.global_model(), train, trusted_, train_, seed_, ws));
  if (scan.scanned) {
    ++scans_;
    out.columns.scanned = 1;
    out.columns.flagged = scan.report.flagged;
    if (!scan.report.anomaly.empty()) {
      out.columns.anomaly = scan.report.flagged >= 0 ? scan.report.anomaly[static_cast<size_t>(scan.report.flagged)]
                                             : *std::max_element(scan.report.anomaly.begin(), scan.report.anomaly.end());
    }
    if (scan.report.flagged >= 0) ++flags_;
    out.notes.push_back(DescribeTriggerScan(round, scan.report));
  }
  if (!scan.pruned.empty()) out.notes.push_back(DescribePruning(round, scan.pruned, trigger_->pruned().size()));
  out.columns.known = static_cast<uint32_t>(trigger_->triggers().size());
  out.columns.pruned = static_cast<uint32_t>(trigger_->pruned().size());
  if (!scan.correction.empty()) {
    out.columns.unlearnt = 1;
    FRUGAL_RETURN_IF_ERROR(engine.SetServerCorrection(std::move(scan.correction)));
  }
  if (!scan.frozen.empty()) FRUGAL_RETURN_IF_ERROR(engine.SetServerFrozen(std::move(scan.frozen)));
  notes_.insert(notes_.end(), out.notes.begin(), out.notes.end());
  return out;
}

Status ServerDefense::AfterClose(const RoundOutcome& outcome, RoundEngine& engine, const Model& model,
                                 TriggerRoundSummary& summary) {
  if (!trigger_ || outcome.applied) return OkStatus();
  const size_t pruned = trigger_->pruned().size();
  if (trigger_->State() == memory_before_) return OkStatus();
  FRUGAL_RETURN_IF_ERROR(trigger_->SetState(memory_before_, model.input_dim(), model.num_classes()));
  FRUGAL_RETURN_IF_ERROR(engine.SetServerFrozen(frozen_before_));
  summary.columns.known = static_cast<uint32_t>(trigger_->triggers().size());
  summary.columns.pruned = static_cast<uint32_t>(trigger_->pruned().size());
  std::string note = "round " + std::to_string(outcome.round) +
                     ": quorum not met, the model is unchanged: the trigger scan's findings of this round";
  if (pruned > trigger_->pruned().size()) {
    note += " and its pruning of " + std::to_string(pruned - trigger_->pruned().size()) + " inputs";
  }
  note += " are dropped with it";
  summary.notes.push_back(note);
  notes_.push_back(std::move(note));
  return OkStatus();
}

Status ServerDefense::Resume(RoundEngine& engine, const Model& model) {
  if (!trigger_) return OkStatus();
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> frozen, trigger_->FrozenCoordinates(model));
  if (frozen.empty()) return OkStatus();
  return engine.SetServerFrozen(std::move(frozen));
}

std::map<std::string, double> ServerDefense::SummaryMetrics() const {
  if (!trigger_) return {};
  return {{"trigger_scans", scans_},
          {"trigger_scans_flagged", flags_},
          {"trigger_known", static_cast<double>(trigger_->triggers().size())},
          {"trigger_pruned_inputs", static_cast<double>(trigger_->pruned().size())}};
}

}  // namespace frugal
