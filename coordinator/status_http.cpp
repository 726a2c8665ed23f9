#include "status_http.h"

#include <cctype>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "frugal/core/text.h"
#include "frugal/report/dashboard.h"
#include "frugal/round/engine.h"
#include "status_request.h"

#include "session_manager.h"

namespace frugal::coordinator {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// One HTTP/1.0 request on the status port.
class StatusConnection : public std::enable_shared_from_this<StatusConnection> {
 public:
  StatusConnection(tcp::socket socket, const SessionManager& mgr, const std::string& token)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), mgr_(mgr), token_(token) {}
  void Start() {
    // A request must arrive promptly; a silent connection is closed.
    timer_.expires_after(std::chrono::seconds(5));
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      boost::system::error_code ignored;
      self->socket_.close(ignored);
    });
    asio::async_read_until(socket_, buf_, "\r\n\r\n",
                           [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                             if (!ec) self->Respond(n);
                           });
  }

 private:
  void Respond(size_t head_size) {
    const std::string_view head(static_cast<const char*>(buf_.data().data()), head_size);
    auto request = ParseStatusRequest(head);
    StatusResponse r;
    bool head_only = false;
    if (!request.ok()) {
      r.status = "400 Bad Request";
      r.body = request.error().message() + "\n";
    } else {
      head_only = request->method == "HEAD";
      r = coordinator::Respond(*request, mgr_, token_);
    }
    out_ = SerializeResponse(r, head_only);
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this()](const boost::system::error_code&, size_t) {
      boost::system::error_code ignored;
      self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
      self->timer_.cancel();
    });
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  const SessionManager& mgr_;
  const std::string& token_;
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
                      {"round_closing", m.round_closing},
                      {"rounds_completed", m.rounds_completed},
                      {"model_version", m.model_version},
                      {"connected_clients", m.connected_clients},
                      {"last_accuracy", nullptr},
                      {"last_federated_accuracy", nullptr}};
  if (m.last_accuracy) j["last_accuracy"] = *m.last_accuracy;
  if (m.last_federated_accuracy) j["last_federated_accuracy"] = *m.last_federated_accuracy;
  // Differential privacy: only for a run that has it.
  if (m.dp_epsilon) j["dp_epsilon"] = *m.dp_epsilon;
  if (m.dp_delta) j["dp_delta"] = *m.dp_delta;
  if (m.dp_noise_multiplier) j["dp_noise_multiplier"] = *m.dp_noise_multiplier;
  // What the epsilon is a bound for (docs/privacy.md, "What the bound assumes").
  if (!m.dp_sampling.empty()) {
    j["dp_sampling"] = m.dp_sampling;
    j["dp_adjacency"] = m.dp_adjacency;
    j["dp_bound"] = m.dp_bound;
  }
  if (!m.stop_reason.empty()) j["stop_reason"] = m.stop_reason;
  // Per device class, measured compute joules against the model's figure for the same rows.
  j["energy_measured_vs_modelled"] = nlohmann::json::object();
  for (const auto& [device, mv] : m.measured_vs_modelled) {
    j["energy_measured_vs_modelled"][device] = {
        {"rows", mv.rows}, {"measured_j", mv.measured_j}, {"modelled_j", mv.modelled_j}, {"ratio", mv.ratio()}};
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

namespace {

PageData DashboardPage(const SessionManager& mgr, const DashboardView& view) {
  const CoordinatorConfig& c = mgr.config();
  PageData page;
  page.title = "Frugal coordinator";
  page.subtitle = c.run_id + " \xC2\xB7 " + std::string(PipelineName(c.pipeline)) + " \xC2\xB7 " + c.model;
  page.target_accuracy = c.target_accuracy;
  page.runs.push_back({std::string(PipelineName(c.pipeline)), mgr.driver().records()});
  page.status = view.status;
  page.clients = view.clients;
  page.round = view.round;
  page.measured_vs_modelled = mgr.driver().Metrics().measured_vs_modelled;
  return page;
}

}  // namespace

Result<std::string> LoadStatusToken(const ServiceConfig& service) {
  if (service.status_token_file.empty()) return std::string();
  std::ifstream in(service.status_token_file);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) return InvalidArgumentError("service.status_token_file: cannot read " + service.status_token_file);
  const std::string text = ss.str();
  const std::string_view t = TrimSpace(text);
  if (t.size() < 16) {
    return InvalidArgumentError("service.status_token_file: " + service.status_token_file +
                                " holds fewer than 16 characters; put a long random token in it");
  }
  for (char ch : t) {
    if (ch <= ' ' || ch > '~') {
      return InvalidArgumentError("service.status_token_file: " + service.status_token_file +
                                  " must hold one token of printable ASCII without spaces");
    }
  }
  return std::string(t);
}

StatusResponse Respond(const StatusRequest& request, const SessionManager& mgr, std::string_view token) {
  StatusResponse r;
  if (request.method != "GET" && request.method != "HEAD") {
    r.status = "405 Method Not Allowed";
    r.body = "the status port is read-only: GET or HEAD\n";
    return r;
  }
  if (!Authorized(request, token)) {
    r.status = "401 Unauthorized";
    r.body = "this status port needs its bearer token (Authorization: Bearer, or ?access_token=)\n";
    r.challenge = true;
    return r;
  }
  if (request.path == "/metrics") {
    r.content_type = "text/plain; version=0.0.4";
    r.body = MetricsText(mgr.driver().Metrics(), mgr);
  } else if (request.path == "/status") {
    r.content_type = "application/json";
    r.body = StatusJson(mgr.driver().Metrics(), mgr.driver().run_id());
  } else if (request.path == "/api/state") {
    r.content_type = "application/json";
    r.body = PageDataJson(DashboardPage(mgr, mgr.Dashboard())) + "\n";
  } else if (request.path == "/" || request.path == "/index.html") {
    r.content_type = "text/html; charset=utf-8";
    std::ostringstream html;
    WriteDashboardHtml(html, DashboardPage(mgr, mgr.Dashboard()));
    r.body = html.str();
  } else {
    r.status = "404 Not Found";
    r.body = "try /, /api/state, /metrics or /status\n";
  }
  return r;
}

std::string SerializeResponse(const StatusResponse& r, bool head_only) {
  std::string out = "HTTP/1.0 " + r.status + "\r\nContent-Type: " + r.content_type +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer"
                    // The page may talk to this coordinator only: no request leaves it.
                    "\r\nContent-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
                    "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; "
                    "form-action 'none'; frame-ancestors 'none'";
  if (r.challenge) out += "\r\nWWW-Authenticate: Bearer realm=\"frugal-status\"";
  out += "\r\nConnection: close\r\n\r\n";
  if (!head_only) out += r.body;
  return out;
}

StatusServer::StatusServer(tcp::acceptor acceptor, const SessionManager& mgr, std::string token)
    : acceptor_(std::move(acceptor)), mgr_(mgr), token_(std::move(token)) {}

void StatusServer::Start() {
  acceptor_.async_accept([self = shared_from_this()](const boost::system::error_code& ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) std::make_shared<StatusConnection>(std::move(socket), self->mgr_, self->token_)->Start();
    self->Start();
  });
}

void StatusServer::Stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

}  // namespace frugal::coordinator
