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
#include "status_request.h"

namespace frugal::coordinator {

class SessionManager;

// The /metrics body: the driver's counters and the wire's.
std::string MetricsText(const DriverMetrics& m, const SessionManager& mgr);
// The /status body; invalid UTF-8 in the run id is replaced, never thrown on.
std::string StatusJson(const DriverMetrics& m, const std::string& run_id);

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
