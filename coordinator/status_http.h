// The coordinator's status port: HTTP/1.0, one request per connection, read
// only. GET / is the live dashboard (the report page, polling GET
// /api/state), GET /metrics Prometheus text, GET /status a JSON summary.
// Loopback by default; bound elsewhere it needs a bearer token
// (service.status_token_file), which, when set, every request must carry.
// Private to coordinator/.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "frugal/coordinator/config.h"
#include "frugal/coordinator/round_driver.h"
#include "frugal/core/status.h"

namespace frugal::coordinator {

class SessionManager;

// The /metrics body: the driver's counters and the wire's.
std::string MetricsText(const DriverMetrics& m, const SessionManager& mgr);
// The /status body; invalid UTF-8 in the run id is replaced, never thrown on.
std::string StatusJson(const DriverMetrics& m, const std::string& run_id);

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

// The token of service.status_token_file ("" when not set), trimmed of
// surrounding whitespace. InvalidArgument naming the file when it cannot be
// read or holds fewer than 16 characters.
Result<std::string> LoadStatusToken(const ServiceConfig& service);

// One response on the status port: status line, headers and body.
struct StatusResponse {
  std::string status = "200 OK", content_type = "text/plain; charset=utf-8", body;
  bool challenge = false;  // 401: add WWW-Authenticate
};
// What the status port answers to `request` (I/O-free, so tests call it directly).
StatusResponse Respond(const StatusRequest& request, const SessionManager& mgr, std::string_view token);
// The response as bytes on the wire (HEAD: the head only).
std::string SerializeResponse(const StatusResponse& r, bool head_only);

class StatusServer : public std::enable_shared_from_this<StatusServer> {
 public:
  StatusServer(boost::asio::ip::tcp::acceptor acceptor, const SessionManager& mgr, std::string token = {});
  void Start();
  void Stop();

 private:
  boost::asio::ip::tcp::acceptor acceptor_;
  const SessionManager& mgr_;
  const std::string token_;
};

}  // namespace frugal::coordinator
