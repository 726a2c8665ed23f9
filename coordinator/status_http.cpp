#include "status_http.h"

#include <chrono>
#include <istream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "session_manager.h"

namespace frugal::coordinator {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// One HTTP/1.0 request on the loopback status port: GET /metrics or /status.
class StatusConnection : public std::enable_shared_from_this<StatusConnection> {
 public:
  StatusConnection(tcp::socket socket, const SessionManager& mgr)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), mgr_(mgr) {}
  void Start() {
    // A request must arrive promptly; a silent connection is closed.
    timer_.expires_after(std::chrono::seconds(5));
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      boost::system::error_code ignored;
      self->socket_.close(ignored);
    });
    asio::async_read_until(socket_, buf_, "\r\n\r\n",
                           [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                             if (!ec) self->Respond();
                           });
  }

 private:
  void Respond() {
    std::istream is(&buf_);
    std::string method, path;
    is >> method >> path;
    std::string body, type = "text/plain; version=0.0.4", status = "200 OK";
    const DriverMetrics m = mgr_.driver().Metrics();
    if (method != "GET") {
      status = "405 Method Not Allowed";
      body = "GET only\n";
    } else if (path == "/metrics") {
      body = MetricsText(m, mgr_);
    } else if (path == "/status") {
      type = "application/json";
      body = StatusJson(m, mgr_.driver().run_id());
    } else {
      status = "404 Not Found";
      body = "try /metrics or /status\n";
    }
    out_ = "HTTP/1.0 " + status + "\r\nContent-Type: " + type + "\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this()](const boost::system::error_code&, size_t) {
      boost::system::error_code ignored;
      self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
      self->timer_.cancel();
    });
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  const SessionManager& mgr_;
  asio::streambuf buf_{8192};  // a request larger than this is dropped
  std::string out_;
};

}  // namespace

std::string MetricsText(const DriverMetrics& m, const SessionManager& mgr) {
  std::ostringstream os;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << value
       << '\n';
  };
  metric("frugal_rounds_completed_total", "counter", "Rounds committed to the store.", m.rounds_completed);
  metric("frugal_round", "gauge", "Open round, or the last one.", m.round);
  metric("frugal_model_version", "gauge", "Global model version.", m.model_version);
  metric("frugal_connected_clients", "gauge", "Registered client connections.", m.connected_clients);
  metric("frugal_sessions", "gauge", "Open TLS connections, registered or not.", mgr.size());
  metric("frugal_payload_bytes_up_total", "counter", "Encoded update bytes received.", m.payload_bytes_up);
  metric("frugal_payload_bytes_down_total", "counter", "Model payload bytes sent.", m.payload_bytes_down);
  metric("frugal_wire_bytes_in_total", "counter", "TLS plaintext bytes read (frames).", mgr.wire_bytes_in);
  metric("frugal_wire_bytes_out_total", "counter", "TLS plaintext bytes written (frames).", mgr.wire_bytes_out);
  metric("frugal_tcp_bytes_in_total", "counter", "TCP payload bytes read: TLS records, handshakes included.",
         mgr.tcp_bytes_in);
  metric("frugal_tcp_bytes_out_total", "counter", "TCP payload bytes written: TLS records, handshakes included.",
         mgr.tcp_bytes_out);
  metric("frugal_joules_total", "counter", "Ledger joules, clients plus server.", m.joules);
  metric("frugal_updates_accepted_total", "counter", "Updates aggregated.", m.updates_accepted);
  os << "# HELP frugal_updates_rejected_total Updates refused, by reason.\n"
     << "# TYPE frugal_updates_rejected_total counter\n";
  for (const char* reason : {"round_closed", "stale_round", "not_selected", "duplicate", "stale_base", "malformed",
                             "wrong_dimension", "non_finite", "bad_weight"}) {
    auto it = m.updates_rejected.find(reason);
    os << "frugal_updates_rejected_total{reason=\"" << reason << "\"} "
       << (it == m.updates_rejected.end() ? 0 : it->second) << '\n';
  }
  metric("frugal_connections_closed_on_error_total", "counter", "Connections closed for bad input or timeouts.",
         mgr.connections_closed_on_error);
  metric("frugal_handshakes_failed_total", "counter", "TLS handshakes refused.", mgr.handshakes_failed);
  metric("frugal_connections_refused_total", "counter", "Connections refused at the cap.", mgr.connections_refused);
  if (m.last_accuracy) metric("frugal_last_accuracy", "gauge", "Test accuracy after the last round.", *m.last_accuracy);
  metric("frugal_federated_evaluations_total", "counter", "Federated evaluations completed (round.eval_every).",
         m.federated_evaluations);
  if (m.last_federated_accuracy) {
    metric("frugal_federated_accuracy", "gauge", "Clients' local-data accuracy, weighted by examples, last evaluation.",
           *m.last_federated_accuracy);
  }
  return os.str();
}

std::string StatusJson(const DriverMetrics& m, const std::string& run_id) {
  nlohmann::json j = {{"run_id", run_id},
                      {"state", m.state},
                      {"round", m.round},
                      {"round_open", m.round_open},
                      {"rounds_completed", m.rounds_completed},
                      {"model_version", m.model_version},
                      {"connected_clients", m.connected_clients},
                      {"last_accuracy", nullptr},
                      {"last_federated_accuracy", nullptr}};
  if (m.last_accuracy) j["last_accuracy"] = *m.last_accuracy;
  if (m.last_federated_accuracy) j["last_federated_accuracy"] = *m.last_federated_accuracy;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

StatusServer::StatusServer(tcp::acceptor acceptor, const SessionManager& mgr)
    : acceptor_(std::move(acceptor)), mgr_(mgr) {}

void StatusServer::Start() {
  acceptor_.async_accept([self = shared_from_this()](const boost::system::error_code& ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) std::make_shared<StatusConnection>(std::move(socket), self->mgr_)->Start();
    self->Start();
  });
}

void StatusServer::Stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

}  // namespace frugal::coordinator
