// The coordinator's loopback status port: HTTP/1.0 GET /metrics (Prometheus
// text) and GET /status (JSON), one request per connection. Private to
// coordinator/.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>

#include <memory>
#include <string>

#include "frugal/coordinator/round_driver.h"

namespace frugal::coordinator {

class SessionManager;

// The /metrics body: the driver's counters and the wire's.
std::string MetricsText(const DriverMetrics& m, const SessionManager& mgr);
// The /status body; invalid UTF-8 in the run id is replaced, never thrown on.
std::string StatusJson(const DriverMetrics& m, const std::string& run_id);

class StatusServer : public std::enable_shared_from_this<StatusServer> {
 public:
  StatusServer(boost::asio::ip::tcp::acceptor acceptor, const SessionManager& mgr);
  void Start();
  void Stop();

 private:
  boost::asio::ip::tcp::acceptor acceptor_;
  const SessionManager& mgr_;
};

}  // namespace frugal::coordinator
