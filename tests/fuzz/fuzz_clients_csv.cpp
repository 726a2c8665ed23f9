// libFuzzer target for ParseClientsCsv (the clients.csv a replay reads from a
// run directory): any bytes give an Error or clients that write back and
// re-parse to as many clients with the same ids and partitions.
#include <cstdint>
#include <sstream>
#include <string_view>

#include "frugal/report/run_dir.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = frugal::ParseClientsCsv(text);
  if (!r.ok()) return 0;
  std::ostringstream out;
  frugal::WriteClientsCsv(out, *r);
  auto again = frugal::ParseClientsCsv(out.str());
  frugal::fuzz::Require(again.ok() && again->size() == r->size());
  for (size_t i = 0; i < r->size(); ++i) {
    frugal::fuzz::Require((*again)[i].id == (*r)[i].id && (*again)[i].examples == (*r)[i].examples &&
                          (*again)[i].partition.has_value() == (*r)[i].partition.has_value());
  }
  return 0;
}
