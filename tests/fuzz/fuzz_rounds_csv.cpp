// libFuzzer target for ParseRoundsCsv (a baseline run's rounds.csv read back):
// any bytes give an Error or records that write back and re-parse identically.
#include <cstdint>
#include <sstream>
#include <string_view>

#include "frugal/report/run_report.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = frugal::ParseRoundsCsv(text);
  if (!r.ok()) return 0;
  std::ostringstream out;
  frugal::WriteRoundsCsv(out, *r);
  auto again = frugal::ParseRoundsCsv(out.str());
  frugal::fuzz::Require(again.ok() && again->size() == r->size());
  return 0;
}
