// A small, complete profile set for the energy tests, with round numbers so
// each expected joule can be worked out by hand in the test that uses it.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <string_view>

namespace frugal::energy_test {

// d1: 2e-10 J/FLOP fp32, 5e-11 int8; d2: 1e-10 fp32, 2.5e-11 int8.
// r1: 5e-7 J/bit up, 1e-7 down, tail 1 W x 10 s, 1 Mb/s up, 4 Mb/s down.
// r2: 1e-9 J/bit both ways, no tail, 1 Gb/s. Region X: 500 gCO2e/kWh.
inline constexpr std::string_view kBaseToml = R"(schema = 1
[server]
watts = 10
pue = 1.5
region = "X"

[devices.d1]
flops_per_s_fp32 = 1e10
joules_per_flop_fp32 = 2e-10
joules_per_flop_int8 = 5e-11
active_watts = 2

[devices.d2]
flops_per_s_fp32 = 2e10
joules_per_flop_fp32 = 1e-10
joules_per_flop_int8 = 2.5e-11
active_watts = 2

[radios.r1]
joules_per_bit_up = 5e-7
joules_per_bit_down = 1e-7
tail_watts = 1
tail_seconds = 10
bandwidth_up_bps = 1e6
bandwidth_down_bps = 4e6

[radios.r2]
joules_per_bit_up = 1e-9
joules_per_bit_down = 1e-9
tail_watts = 0
tail_seconds = 0
bandwidth_up_bps = 1e9
bandwidth_down_bps = 1e9

[regions.X]
gco2e_per_kwh = 500

[mixes.m]
devices = { d1 = 3, d2 = 1 }
radios = { r1 = 1 }
regions = { X = 1 }
)";

// kBaseToml with the first occurrence of `from` replaced by `to` (which must occur).
inline std::string BaseWith(std::string_view from, std::string_view to) {
  std::string s(kBaseToml);
  size_t at = s.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "fixture text not found: ", from);
  s.replace(at, from.size(), to);
  return s;
}

}  // namespace frugal::energy_test
