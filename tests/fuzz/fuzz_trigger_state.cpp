// libFuzzer target for the trigger scan's stored memory (TriggerDefense::SetState,
// frugal/round/trigger_scan.h), which a restarted coordinator reads back from
// its store: any bytes give an Error that leaves the memory untouched, or a
// memory whose own bytes read back to the same memory.
#include <cstdint>
#include <vector>

#include "frugal/round/trigger_scan.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal;
  constexpr size_t kInputs = 16, kClasses = 4;
  TriggerScanConfig cfg;
  cfg.every = 1;
  TriggerDefense defense(cfg);
  const Status st = defense.SetState(std::span<const uint8_t>(data, size), kInputs, kClasses);
  if (!st.ok()) {
    fuzz::Require(defense.triggers().empty() && defense.pruned().empty());
    return 0;
  }
  for (const RecoveredTrigger& t : defense.triggers()) {
    fuzz::Require(t.mask.size() == kInputs && t.pattern.size() == kInputs);
    fuzz::Require(t.target >= 0 && static_cast<size_t>(t.target) < kClasses);
  }
  for (uint32_t p : defense.pruned()) fuzz::Require(p < kInputs);
  const std::vector<uint8_t> bytes = defense.State();
  TriggerDefense again(cfg);
  fuzz::Require(again.SetState(bytes, kInputs, kClasses).ok());
  fuzz::Require(again.State() == bytes);
  return 0;
}
