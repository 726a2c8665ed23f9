// libFuzzer target for the energy profile parser (a user's override file):
// any bytes give an Error or profiles whose every figure is finite and valid.
#include <cmath>
#include <cstdint>
#include <string_view>

#include "frugal/energy/profiles.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto user = frugal::EnergyProfiles::ParseOverride(text, "fuzz.toml");
  if (!user.ok()) return 0;
  for (const auto& d : user->devices()) {
    frugal::fuzz::Require(std::isfinite(d.flops_per_s_fp32) && d.flops_per_s_fp32 >= 0);
  }
  for (const auto& r : user->radios()) frugal::fuzz::Require(std::isfinite(r.tail_seconds) && r.tail_seconds >= 0);
  return 0;
}
