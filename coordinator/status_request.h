// The status port's request head and its bearer-token rule: I/O-free, so the
// parser of these outside bytes is fuzzed on its own (tests/fuzz/
// fuzz_status_request.cpp). Private to coordinator/.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "frugal/core/status.h"

namespace frugal::coordinator {

// The head of one request on the status port, as ParseStatusRequest reads it.
struct StatusRequest {
  std::string method, path, query;  // "/api/state?x=1": path "/api/state", query "x=1"
  std::optional<std::string> bearer;  // the token of an "Authorization: Bearer" header
};

// Parses an HTTP/1.x request head (request line and headers, up to and
// including the blank line; outside bytes). InvalidArgument naming what is
// wrong: a malformed request line, a header without a colon, a head over 8 KiB.
Result<StatusRequest> ParseStatusRequest(std::string_view head);

// The value of `key` in an application/x-www-form-urlencoded query
// ("a=1&access_token=x"), percent-decoded; nullopt when absent or malformed.
std::optional<std::string> QueryValue(std::string_view query, std::string_view key);

// Whether the request carries `token` (RFC 6750: an Authorization: Bearer
// header, or the access_token query parameter a browser can put in a link).
// Compared in time independent of where the strings differ.
bool Authorized(const StatusRequest& request, std::string_view token);

}  // namespace frugal::coordinator
