// Error-feedback residuals of the simulated clients. Only clients that have
// trained own one; residuals are kept in memory up to a budget and the rest
// spill to one slot file on disk, so a million-client population never holds a
// million model-sized vectors. Residuals are kept as fp32, or as bf16 (half the
// memory and spill traffic, 8 significant bits, fp32's exponent range so small
// residuals never underflow) where the store is built that way. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "frugal/core/status.h"

namespace frugal::sim {

enum class ResidualPrecision { kFp32, kBf16 };

class ResidualStore {
 public:
  // dim: floats per residual; memory_budget_bytes: resident bytes before
  // spilling; spill_path: the slot file, created on first spill; precision:
  // how a residual is kept (kBf16 rounds each value to nearest, ties to even).
  ResidualStore(size_t dim, size_t memory_budget_bytes, std::string spill_path,
                ResidualPrecision precision = ResidualPrecision::kFp32);
  ~ResidualStore();
  ResidualStore(const ResidualStore&) = delete;
  ResidualStore& operator=(const ResidualStore&) = delete;

  // Copies client's residual into out (size dim); zeros if it has none.
  Status Load(uint64_t client, std::span<float> out);
  // Stores client's residual (size dim).
  Status Store(uint64_t client, std::span<const float> residual);

  size_t clients() const;
  // Whether client has a residual stored (Load gives zeros otherwise).
  bool Holds(uint64_t client) const;
  size_t resident_bytes() const;
  size_t spilled_bytes() const;
  size_t bytes_per_residual() const { return bytes_; }

 private:
  size_t dim_;
  size_t budget_;
  std::string spill_path_;
  ResidualPrecision precision_;
  size_t bytes_;  // one stored residual
  int fd_ = -1;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<uint8_t>> resident_;
  std::unordered_map<uint64_t, uint64_t> slots_;  // client -> slot in the spill file
  uint64_t next_slot_ = 0;
};

// bf16 of each value, rounded to nearest, ties to even (values finite).
void ToBf16(std::span<const float> in, uint16_t* out);
// The floats bf16 values stand for (exact).
void FromBf16(const uint16_t* in, std::span<float> out);

}  // namespace frugal::sim
