// libFuzzer target for ParseStatusRequest and QueryValue (the head of an HTTP
// request to the coordinator's status port, outside bytes): any bytes give an
// Error or a request whose path starts with '/', and the token rule never
// accepts a request that does not carry the token.
#include <cstdint>
#include <string_view>

#include "../../coordinator/status_request.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view head(reinterpret_cast<const char*>(data), size);
  auto r = frugal::coordinator::ParseStatusRequest(head);
  if (!r.ok()) return 0;
  frugal::fuzz::Require(!r->path.empty() && r->path.front() == '/');
  frugal::fuzz::Require(r->path.size() + r->query.size() <= size);
  const std::string_view token = "fuzz-token-0123456789";
  const bool carries = (r->bearer && *r->bearer == token) ||
                       frugal::coordinator::QueryValue(r->query, "access_token") == std::string(token);
  frugal::fuzz::Require(frugal::coordinator::Authorized(*r, token) == carries);
  return 0;
}
