// The broadcast steps a client keeps between tasks (secure.derive_guide): the
// agent keeps the last few it applied, and the coordinator and the simulator
// track only the version from which a client holds them, to know whether it
// can derive a round's support guide itself (docs/privacy.md, "Guided support").
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "frugal/codec/uplink.h"

namespace frugal {

// A client's history after a download to `to_version`: `history_from` is the
// oldest version from which it held every step up to its model version (0:
// it keeps none), `capacity` the most steps it keeps (0: none). A full model
// starts an empty history at to_version; a chain or merged piece extends it,
// the oldest steps beyond `capacity` dropped. Pure.
uint32_t HistoryAfterDownload(uint32_t history_from, uint32_t capacity, bool full_model, uint32_t to_version);

// Whether a client whose history starts at `history_from` and whose model is
// at `version` holds the `steps` newest steps (those ending at `version`).
bool HistoryCovers(uint32_t history_from, uint32_t version, uint32_t steps);

// The agent's copy: the last `capacity` steps it applied, as decoded, oldest
// first, ending at the version it holds. Not thread-safe.
class StepHistory {
 public:
  explicit StepHistory(uint32_t capacity = 0) : capacity_(capacity) {}
  uint32_t capacity() const { return capacity_; }
  // Holds nothing (no model, or a model of unknown past): from() is 0.
  void Clear();
  // A model at `version` with no steps behind it (a full model, version 1 built from the seed).
  void Reset(uint32_t version);
  // The steps taking from_version to from_version + |steps|, applied: appended
  // if they continue the history, else the history restarts with them.
  void Append(uint32_t from_version, std::vector<SparseUpdate> steps);
  // Oldest version from which every step up to the model's is held; 0 when
  // nothing is kept (capacity 0, or cleared).
  uint32_t from() const;
  uint32_t version() const { return version_; }
  // The newest `n` steps, oldest first; empty if fewer are held.
  std::span<const SparseUpdate> Newest(uint32_t n) const;

 private:
  uint32_t capacity_ = 0;
  bool valid_ = false;
  uint32_t version_ = 0;  // the model version the last step brought
  std::vector<SparseUpdate> steps_;
};

}  // namespace frugal
