#include "frugal/round/step_history.h"

#include <algorithm>
#include <utility>

namespace frugal {

uint32_t HistoryAfterDownload(uint32_t history_from, uint32_t capacity, bool full_model, uint32_t to_version) {
  if (capacity == 0) return 0;
  if (full_model) return to_version;
  if (history_from == 0 || history_from > to_version) return 0;
  return std::max(history_from, to_version > capacity ? to_version - capacity : 1u);
}

bool HistoryCovers(uint32_t history_from, uint32_t version, uint32_t steps) {
  return history_from != 0 && history_from <= version && version - history_from >= steps;
}

void StepHistory::Clear() {
  valid_ = false;
  version_ = 0;
  steps_.clear();
}

void StepHistory::Reset(uint32_t version) {
  steps_.clear();
  version_ = version;
  valid_ = capacity_ > 0 && version > 0;
}

void StepHistory::Append(uint32_t from_version, std::vector<SparseUpdate> steps) {
  if (capacity_ == 0) return;
  if (!valid_ || from_version != version_) Reset(from_version);
  version_ = from_version + static_cast<uint32_t>(steps.size());
  for (SparseUpdate& s : steps) steps_.push_back(std::move(s));
  if (steps_.size() > capacity_) {
    steps_.erase(steps_.begin(), steps_.begin() + static_cast<std::ptrdiff_t>(steps_.size() - capacity_));
  }
}

uint32_t StepHistory::from() const {
  return valid_ ? version_ - static_cast<uint32_t>(steps_.size()) : 0;
}

std::span<const SparseUpdate> StepHistory::Newest(uint32_t n) const {
  if (!valid_ || n > steps_.size()) return {};
  return std::span<const SparseUpdate>(steps_).last(n);
}

}  // namespace frugal
