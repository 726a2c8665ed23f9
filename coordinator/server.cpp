#include "frugal/coordinator/server.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "frugal/coordinator/round_driver.h"
#include "frugal/coordinator/store.h"
#include "frugal/proto/frame.h"

namespace frugal::coordinator {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

class SessionManager;

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;

// The text of OpenSSL's first queued error (and the queue cleared), for logs.
std::string OpenSslError(int ssl_error) {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
  }
  if (ssl_error == SSL_ERROR_SYSCALL) return errno != 0 ? std::strerror(errno) : "connection closed";
  return "TLS error " + std::to_string(ssl_error);
}

// One client connection. Every handler runs on the session's strand.
//
// TLS runs in OpenSSL directly on the non-blocking socket: the session waits
// for readiness with Asio and calls SSL_do_handshake/SSL_read_ex/SSL_write_ex
// itself. Compared with asio::ssl::stream this keeps no per-connection copy
// buffers (its two 17 KiB stream buffers and the two 17 KiB halves of its BIO
// pair); with SSL_MODE_RELEASE_BUFFERS an idle connection holds only the SSL
// object, and plaintext is read through the manager's one shared buffer.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // A refusing session completes the TLS handshake only to tell the client
  // why it is refused (an Error with `refusal`), then closes.
  struct Refusal {
    v1::Error::Code code;
    std::string reason, message;
  };
  Session(tcp::socket socket, SSL_CTX* ctx, SessionManager& manager, uint64_t conn_id,
          std::optional<Refusal> refusal = std::nullopt);
  void Start();
  // Queues one message; closes the session if the queue is over its bound.
  void Send(const v1::Envelope& env);
  // Sends what is queued, then closes.
  void CloseAfterWrites();
  // Closes now.
  void Stop();
  uint64_t conn_id() const { return conn_id_; }
  bool registered() const { return registered_; }
  const std::string& identity() const { return identity_; }

 private:
  enum class Want { kRead, kWrite };
  // Calls `then` on the strand once the socket is readable or writable.
  void Await(Want want, void (Session::*then)());
  void DoHandshake();
  void OnHandshake();
  void DoRead();
  void Dispatch(const v1::Envelope& env);
  void DoWrite();
  void ArmTimer(double seconds, const char* what);
  void Fail(const std::string& why);

  tcp::socket socket_;
  SslPtr ssl_;
  asio::steady_timer timer_;
  SessionManager& manager_;
  uint64_t conn_id_;
  std::string peer_;
  std::string identity_;
  std::optional<Refusal> refusal_;
  bool registered_ = false;
  bool closing_ = false;
  bool stopped_ = false;
  bool read_waiting_ = false;   // a readiness wait for DoRead is pending
  bool write_waiting_ = false;  // a readiness wait for DoWrite is pending
  EnvelopeDecoder decoder_;
  std::deque<std::vector<uint8_t>> write_queue_;
  size_t write_offset_ = 0;  // bytes of write_queue_.front() already written
};

// Owns the sessions, the driver's transport, metrics of the wire, heartbeats.
class SessionManager : public DriverTransport {
 public:
  SessionManager(asio::io_context& io, const CoordinatorConfig& config) : io_(io), config_(config) {}

  void Add(std::shared_ptr<Session> s) { sessions_[s->conn_id()] = std::move(s); }
  void Remove(uint64_t conn_id) {
    if (sessions_.erase(conn_id) != 0 && driver_ != nullptr && !stopping_) driver_->OnDisconnect(conn_id, Now());
  }
  // From now on closing sessions are not reported to the driver, so a
  // shutdown never closes (and commits) a half-finished round.
  void BeginShutdown() { stopping_ = true; }
  void StopAll() {
    auto copy = sessions_;
    for (auto& [id, s] : copy) s->Stop();
    sessions_.clear();
  }
  void ByeAll(const std::string& reason) {
    v1::Envelope bye;
    bye.mutable_bye()->set_reason(reason);
    auto copy = sessions_;
    for (auto& [id, s] : copy) {
      s->Send(bye);
      s->CloseAfterWrites();
    }
  }
  void HeartbeatAll() {
    v1::Envelope hb;
    hb.mutable_heartbeat()->set_sequence(++heartbeat_seq_);
    auto copy = sessions_;
    for (auto& [id, s] : copy) {
      if (s->registered()) s->Send(hb);
    }
  }
  size_t size() const { return sessions_.size(); }

  void Send(uint64_t conn, const v1::Envelope& env) override {
    auto it = sessions_.find(conn);
    if (it != sessions_.end()) it->second->Send(env);
  }

  double Now() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  bool Revoked(const std::string& identity) const {
    return std::find(config_.service.revoked.begin(), config_.service.revoked.end(), identity) !=
           config_.service.revoked.end();
  }

  asio::io_context& io_;
  const CoordinatorConfig& config_;
  RoundDriver* driver_ = nullptr;
  uint64_t wire_bytes_in = 0, wire_bytes_out = 0;
  uint64_t connections_refused = 0, connections_closed_on_error = 0, handshakes_failed = 0;
  // Sessions beyond the cap that are being told so; bounded so that a flood
  // beyond the cap costs at most this many handshakes at a time.
  static constexpr size_t kMaxRefusing = 64;
  size_t refusing = 0;
  // Plaintext read buffer shared by every session: all run on the one I/O
  // thread and drain it synchronously, so no idle session holds a buffer.
  std::array<uint8_t, 64 * 1024> read_buffer;

 private:
  std::map<uint64_t, std::shared_ptr<Session>> sessions_;
  uint64_t heartbeat_seq_ = 0;
  bool stopping_ = false;
  const Clock::time_point start_ = Clock::now();
};

Session::Session(tcp::socket socket, SSL_CTX* ctx, SessionManager& manager, uint64_t conn_id,
                 std::optional<Refusal> refusal)
    : socket_(std::move(socket)),
      ssl_(SSL_new(ctx)),
      timer_(socket_.get_executor()),
      manager_(manager),
      conn_id_(conn_id),
      refusal_(std::move(refusal)),
      decoder_(manager.config_.service.max_frame_mb << 20) {
  if (refusal_) ++manager_.refusing;
  boost::system::error_code ec;
  const auto ep = socket_.remote_endpoint(ec);
  peer_ = ec ? "unknown peer" : ep.address().to_string() + ":" + std::to_string(ep.port());
}

void Session::Start() {
  ArmTimer(manager_.config_.service.handshake_timeout_s, "TLS handshake and Hello");
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  if (!ssl_ || ec || SSL_set_fd(ssl_.get(), socket_.native_handle()) != 1) {
    ++manager_.handshakes_failed;
    spdlog::error("cannot set up TLS for {}: {}", peer_, ec ? ec.message() : OpenSslError(SSL_ERROR_SSL));
    Stop();
    return;
  }
  SSL_set_accept_state(ssl_.get());
  DoHandshake();
}

void Session::Await(Want want, void (Session::*then)()) {
  bool& waiting = then == &Session::DoWrite ? write_waiting_ : read_waiting_;
  if (waiting || stopped_) return;
  waiting = true;
  socket_.async_wait(want == Want::kRead ? tcp::socket::wait_read : tcp::socket::wait_write,
                     [self = shared_from_this(), then, &waiting](const boost::system::error_code& ec) {
                       waiting = false;
                       if (ec || self->stopped_) return;
                       ((*self).*then)();
                     });
}

void Session::DoHandshake() {
  if (stopped_) return;
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_.get());
  if (r == 1) {
    OnHandshake();
    return;
  }
  const int e = SSL_get_error(ssl_.get(), r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    Await(e == SSL_ERROR_WANT_READ ? Want::kRead : Want::kWrite, &Session::DoHandshake);
    return;
  }
  ++manager_.handshakes_failed;
  spdlog::warn("TLS handshake with {} refused: {}", peer_, OpenSslError(e));
  Stop();
}

void Session::ArmTimer(double seconds, const char* what) {
  timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  timer_.async_wait([self = shared_from_this(), what](const boost::system::error_code& ec) {
    if (ec || self->stopped_) return;  // cancelled: re-armed or closed
    if (self->registered_ && self->manager_.driver_->Busy(self->conn_id_)) {
      // A client training on its task cannot answer heartbeats; the round's deadline bounds it.
      self->ArmTimer(self->manager_.config_.service.idle_timeout_s, what);
      return;
    }
    self->Fail(std::string("timed out waiting for ") + what);
  });
}

void Session::Fail(const std::string& why) {
  if (stopped_) return;
  spdlog::warn("closing connection {} from {}{}: {}", conn_id_, peer_,
               identity_.empty() ? "" : " (" + identity_ + ")", why);
  ++manager_.connections_closed_on_error;
  Stop();
}

void Session::Stop() {
  if (stopped_) return;
  stopped_ = true;
  timer_.cancel();
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  if (refusal_) {
    --manager_.refusing;
  } else {
    manager_.Remove(conn_id_);
  }
}

void Session::OnHandshake() {
  if (stopped_) return;
  // Identity = the CN of the verified client certificate.
  X509* cert = SSL_get1_peer_certificate(ssl_.get());
  if (cert == nullptr) {
    Fail("no client certificate");
    return;
  }
  char cn[256] = {0};
  const int len = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  X509_free(cert);
  if (len <= 0) {
    Fail("client certificate has no CN");
    return;
  }
  identity_ = cn;
  if (refusal_) {
    spdlog::warn("refusing {} from {}: {}", identity_, peer_, refusal_->message);
    v1::Envelope env;
    env.mutable_error()->set_code(refusal_->code);
    env.mutable_error()->set_reason(refusal_->reason);
    env.mutable_error()->set_message(refusal_->message);
    Send(env);
    CloseAfterWrites();
    return;
  }
  if (manager_.Revoked(identity_)) {
    spdlog::warn("refusing revoked identity {} from {}", identity_, peer_);
    v1::Envelope env;
    env.mutable_error()->set_code(v1::Error::PERMISSION_DENIED);
    env.mutable_error()->set_message("identity " + identity_ + " is revoked");
    Send(env);
    CloseAfterWrites();
    return;
  }
  DoRead();
}

void Session::DoRead() {
  // A bounded number of reads per turn, so one busy peer cannot starve the others.
  for (int turn = 0; turn < 16; ++turn) {
    if (stopped_ || closing_) return;
    ERR_clear_error();
    size_t n = 0;
    std::array<uint8_t, 64 * 1024>& buf = manager_.read_buffer;
    errno = 0;  // SSL_ERROR_SYSCALL with errno 0 is the peer closing without close_notify
    const int r = SSL_read_ex(ssl_.get(), buf.data(), buf.size(), &n);
    if (r != 1) {
      const int e = SSL_get_error(ssl_.get(), r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        Await(e == SSL_ERROR_WANT_READ ? Want::kRead : Want::kWrite, &Session::DoRead);
        return;
      }
      const unsigned long first = ERR_peek_error();
      const bool eof = e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && first == 0 && errno == 0) ||
                       (e == SSL_ERROR_SSL && ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
      if (eof) {
        ERR_clear_error();
        if (Status st = decoder_.Finish(); !st.ok()) {
          Fail(st.error().message());
          return;
        }
        spdlog::debug("connection {} ({}) closed by the peer", conn_id_, identity_);
      } else {
        spdlog::info("connection {} ({}) read error: {}", conn_id_, identity_, OpenSslError(e));
      }
      Stop();
      return;
    }
    manager_.wire_bytes_in += n;
    if (registered_) ArmTimer(manager_.config_.service.idle_timeout_s, "traffic (idle timeout)");
    if (Status st = decoder_.Feed(std::span(buf.data(), n)); !st.ok()) {
      Fail(st.error().message());
      return;
    }
    for (;;) {
      auto env = decoder_.Next();
      if (!env.ok()) {
        Fail(env.error().message());
        return;
      }
      if (!env->has_value()) break;
      Dispatch(**env);
      if (stopped_ || closing_) return;
    }
  }
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->DoRead(); });
}

void Session::Dispatch(const v1::Envelope& env) {
  RoundDriver& driver = *manager_.driver_;
  const double now = manager_.Now();
  if (!registered_) {
    if (env.body_case() != v1::Envelope::kHello) {
      Fail(std::string("expected Hello, got ") + EnvelopeKindName(env));
      return;
    }
    auto reg = driver.OnHello(conn_id_, identity_, env.hello(), now);
    if (!reg.ok()) {
      spdlog::warn("refusing Hello from {} ({}): {}", identity_, peer_, reg.error().message());
      v1::Envelope err;
      err.mutable_error()->set_code(reg.error().code() == ErrorCode::kPermissionDenied ? v1::Error::PERMISSION_DENIED
                                                                                         : v1::Error::INVALID_ARGUMENT);
      err.mutable_error()->set_message(reg.error().message());
      Send(err);
      CloseAfterWrites();
      return;
    }
    registered_ = true;
    ArmTimer(manager_.config_.service.idle_timeout_s, "traffic (idle timeout)");
    v1::Envelope out;
    *out.mutable_register_() = *reg;
    Send(out);
    driver.Tick(now);  // may open a round that includes this client
    return;
  }
  switch (env.body_case()) {
    case v1::Envelope::kUpdate:
      driver.OnUpdate(conn_id_, env.update(), now);
      break;
    case v1::Envelope::kError:
      driver.OnClientError(conn_id_, env.error(), now);
      break;
    case v1::Envelope::kHeartbeat:
      if (!env.heartbeat().reply()) {
        v1::Envelope reply;
        reply.mutable_heartbeat()->set_sequence(env.heartbeat().sequence());
        reply.mutable_heartbeat()->set_reply(true);
        Send(reply);
      }
      break;
    case v1::Envelope::kEvalResult:
      spdlog::debug("client {} evaluated v{}: accuracy {:.4f} on {} examples", identity_,
                    env.eval_result().model_version(), env.eval_result().accuracy(), env.eval_result().examples());
      driver.OnEvalResult(conn_id_, env.eval_result(), now);
      break;
    case v1::Envelope::kBye:
      spdlog::debug("client {} says bye: {}", identity_, env.bye().reason());
      Stop();
      break;
    default:
      Fail(std::string("a client may not send ") + EnvelopeKindName(env));
      break;
  }
}

void Session::Send(const v1::Envelope& env) {
  if (stopped_ || closing_) return;
  if (write_queue_.size() >= manager_.config_.service.write_queue_limit) {
    Fail("write queue over " + std::to_string(manager_.config_.service.write_queue_limit) +
         " messages (peer not reading)");
    return;
  }
  auto bytes = EncodeEnvelope(env, manager_.config_.service.max_frame_mb << 20);
  if (!bytes.ok()) {
    spdlog::error("cannot send a {} to {}: {}", EnvelopeKindName(env), identity_, bytes.error().message());
    return;
  }
  write_queue_.push_back(std::move(*bytes));
  DoWrite();
}

void Session::CloseAfterWrites() {
  closing_ = true;
  if (!write_waiting_ && write_queue_.empty()) Stop();
}

void Session::DoWrite() {
  while (!stopped_ && !write_waiting_ && !write_queue_.empty()) {
    const std::vector<uint8_t>& front = write_queue_.front();
    ERR_clear_error();
    size_t n = 0;
    const int r = SSL_write_ex(ssl_.get(), front.data() + write_offset_, front.size() - write_offset_, &n);
    if (r != 1) {
      const int e = SSL_get_error(ssl_.get(), r);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        // Retried with the same bytes once the socket is ready.
        Await(e == SSL_ERROR_WANT_WRITE ? Want::kWrite : Want::kRead, &Session::DoWrite);
        return;
      }
      spdlog::info("connection {} ({}) write error: {}", conn_id_, identity_, OpenSslError(e));
      Stop();
      return;
    }
    manager_.wire_bytes_out += n;
    write_offset_ += n;
    if (write_offset_ == front.size()) {
      write_queue_.pop_front();
      write_offset_ = 0;
    }
  }
  if (!stopped_ && closing_ && write_queue_.empty()) Stop();
}

// Accepts TCP connections and hands each to a new Session (or refuses it at the cap).
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& io, tcp::acceptor acceptor, SSL_CTX* ctx, SessionManager& manager)
      : io_(io), acceptor_(std::move(acceptor)), ctx_(ctx), manager_(manager) {}
  void Start() { DoAccept(); }
  void Stop() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

 private:
  void DoAccept() {
    acceptor_.async_accept(asio::make_strand(io_), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                             tcp::socket socket) {
      self->OnAccept(ec, std::move(socket));
    });
  }
  void OnAccept(const boost::system::error_code& ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      const uint32_t cap = manager_.config_.service.max_connections;
      if (manager_.size() >= cap) {
        ++manager_.connections_refused;
        if (manager_.refusing < SessionManager::kMaxRefusing) {
          // Told why over TLS (RESOURCE_EXHAUSTED: retry with backoff); never registered.
          Session::Refusal r{v1::Error::RESOURCE_EXHAUSTED, "connection_cap",
                             "connection cap of " + std::to_string(cap) + " reached; retry later"};
          std::make_shared<Session>(std::move(socket), ctx_, manager_, ++next_conn_, std::move(r))->Start();
        } else {
          spdlog::warn("connection cap of {} reached and {} refusals under way; closing a connection", cap,
                       manager_.refusing);
          boost::system::error_code ignored;
          socket.close(ignored);
        }
      } else {
        auto s = std::make_shared<Session>(std::move(socket), ctx_, manager_, ++next_conn_);
        manager_.Add(s);
        s->Start();
      }
    } else {
      spdlog::warn("accept failed: {}", ec.message());
    }
    DoAccept();
  }

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  SSL_CTX* ctx_;
  SessionManager& manager_;
  uint64_t next_conn_ = 0;
};

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
  // Invalid UTF-8 in a configured run id is replaced, never thrown on.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

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
    const DriverMetrics m = mgr_.driver_->Metrics();
    if (method != "GET") {
      status = "405 Method Not Allowed";
      body = "GET only\n";
    } else if (path == "/metrics") {
      body = MetricsText(m, mgr_);
    } else if (path == "/status") {
      type = "application/json";
      body = StatusJson(m, mgr_.driver_->run_id());
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

class StatusServer : public std::enable_shared_from_this<StatusServer> {
 public:
  StatusServer(tcp::acceptor acceptor, const SessionManager& mgr) : acceptor_(std::move(acceptor)), mgr_(mgr) {}
  void Start() {
    acceptor_.async_accept([self = shared_from_this()](const boost::system::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) std::make_shared<StatusConnection>(std::move(socket), self->mgr_)->Start();
      self->Start();
    });
  }
  void Stop() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

 private:
  tcp::acceptor acceptor_;
  const SessionManager& mgr_;
};

Result<tcp::acceptor> Bind(asio::io_context& io, const std::string& address, uint32_t port, const std::string& what) {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(address, ec);
  if (ec) return InvalidArgumentError(what + " address '" + address + "' is not an IP address");
  tcp::acceptor acc(io);
  const tcp::endpoint ep(addr, static_cast<uint16_t>(port));
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return UnavailableError("cannot listen on " + address + ":" + std::to_string(port) + " for " + what + ": " +
                                  ec.message());
  return acc;
}

Status WritePortFile(const std::string& path, uint16_t port) {
  if (path.empty()) return OkStatus();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << '\n';
    if (!out) return UnavailableError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return UnavailableError("cannot rename " + tmp + " to " + path);
  return OkStatus();
}

Result<std::unique_ptr<ssl::context>> MakeServerContext(const ServiceConfig& s) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  // TLS 1.3 only: nothing older is offered or accepted.
  if (SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION) != 1) {
    return InternalError("OpenSSL refuses to pin TLS 1.3");
  }
  for (const std::string* f : {&s.server_cert, &s.server_key, &s.ca_cert}) {
    if (!std::filesystem::exists(*f)) {
      return NotFoundError("TLS file '" + *f + "' does not exist (create it with `frugal-coordinator ca init`)");
    }
  }
  // An idle connection gives its TLS read and write buffers back (about 34 KiB).
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  // Clients never resume sessions: no tickets to build and send after each handshake.
  SSL_CTX_set_num_tickets(native, 0);
  // Sessions call SSL_write_ex themselves and retry a blocked write with the same bytes.
  SSL_CTX_set_mode(native, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression, ec);
  ctx->use_certificate_chain_file(s.server_cert, ec);
  if (ec) return InvalidArgumentError("server certificate " + s.server_cert + ": " + ec.message());
  ctx->use_private_key_file(s.server_key, ssl::context::pem, ec);
  if (ec) return InvalidArgumentError("server key " + s.server_key + ": " + ec.message());
  ctx->load_verify_file(s.ca_cert, ec);
  if (ec) return InvalidArgumentError("CA certificate " + s.ca_cert + ": " + ec.message());
  ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return InternalError("setting mutual TLS: " + ec.message());
  return ctx;
}

}  // namespace

Status RunCoordinator(const CoordinatorConfig& config) {
  const ServiceConfig& s = config.service;
  SilenceProtobufLogs();
  // OpenSSL writes to the sockets itself: a peer that vanished must give EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<ssl::context> ctx, MakeServerContext(s));
  const std::string dir = config.data_dir.empty() ? std::string(FRUGAL_FMNIST_DIR) : config.data_dir;
  FRUGAL_ASSIGN_OR_RETURN(Dataset test, LoadFashionMnist(Split::kTest, dir));
  DriverDeps deps;
  FRUGAL_ASSIGN_OR_RETURN(deps.profiles, s.profiles.empty() ? EnergyProfiles::LoadDefault()
                                                            : EnergyProfiles::LoadDefaultWithOverride(s.profiles));
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, Store::Open(s.store));

  asio::io_context io(1);
  SessionManager manager(io, config);
  deps.store = store.get();
  deps.test = &test;
  deps.transport = &manager;
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<RoundDriver> driver, RoundDriver::Create(config, std::move(deps)));
  manager.driver_ = driver.get();

  FRUGAL_ASSIGN_OR_RETURN(tcp::acceptor acceptor, Bind(io, s.listen_address, s.port, "clients"));
  FRUGAL_ASSIGN_OR_RETURN(tcp::acceptor status_acceptor, Bind(io, s.status_address, s.status_port, "status"));
  const uint16_t port = acceptor.local_endpoint().port();
  const uint16_t status_port = status_acceptor.local_endpoint().port();
  auto listener = std::make_shared<Listener>(io, std::move(acceptor), ctx->native_handle(), manager);
  auto status = std::make_shared<StatusServer>(std::move(status_acceptor), manager);
  listener->Start();
  status->Start();
  FRUGAL_RETURN_IF_ERROR(WritePortFile(s.port_file, port));
  FRUGAL_RETURN_IF_ERROR(WritePortFile(s.status_port_file, status_port));
  spdlog::info("frugal-coordinator: run {} on {}:{} (mutual TLS 1.3), status on http://{}:{}/status", config.run_id,
               s.listen_address, port, s.status_address, status_port);

  bool finishing = false;
  std::optional<Error> result;
  auto shutdown = [&](const std::string& reason) {
    if (finishing) return;
    finishing = true;
    manager.BeginShutdown();
    listener->Stop();
    manager.ByeAll(reason);
    // Each session closes once its Bye is written; stop when all have, or
    // after a grace period for peers that do not read.
    auto grace = std::make_shared<asio::steady_timer>(io);
    auto give_up = Clock::now() + std::chrono::milliseconds(500);
    auto check = std::make_shared<std::function<void()>>();
    std::weak_ptr<std::function<void()>> weak = check;  // the pending wait owns it, not itself
    *check = [&, grace, give_up, weak]() {
      if (manager.size() > 0 && Clock::now() < give_up) {
        grace->expires_after(std::chrono::milliseconds(10));
        grace->async_wait([next = weak.lock()](const boost::system::error_code&) { (*next)(); });
        return;
      }
      manager.StopAll();
      status->Stop();
      io.stop();
    };
    (*check)();
  };

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: stopping", sig);
    shutdown("coordinator stopping");
  });

  // The clock of the round driver: deadlines, round openings, heartbeats.
  asio::steady_timer tick(io);
  double next_heartbeat = s.heartbeat_s;
  std::function<void()> arm_tick = [&]() {
    tick.expires_after(std::chrono::milliseconds(100));
    tick.async_wait([&](const boost::system::error_code& ec) {
      if (ec || finishing) return;
      const double now = manager.Now();
      driver->Tick(now);
      if (driver->fatal()) {
        spdlog::error("stopping: {}", driver->fatal()->message());
        result = *driver->fatal();
        shutdown("coordinator error");
        return;
      }
      if (driver->finished()) {
        spdlog::info("run {} complete: {} rounds; run directory {}", config.run_id, config.rounds, s.out_dir);
        shutdown("run complete");
        return;
      }
      if (now >= next_heartbeat) {
        manager.HeartbeatAll();
        next_heartbeat = now + s.heartbeat_s;
      }
      arm_tick();
    });
  };
  arm_tick();
  io.run();
  if (result) return *result;
  return OkStatus();
}

}  // namespace frugal::coordinator
