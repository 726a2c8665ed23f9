#include "session.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cerrno>
#include <chrono>

#include "frugal/coordinator/round_driver.h"
#include "frugal/proto/convert.h"
#include "session_manager.h"
#include "tls_context.h"

namespace frugal::coordinator {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Session::Session(tcp::socket socket, SSL_CTX* ctx, SessionManager& manager, uint64_t conn_id,
                 std::optional<v1::Envelope> refusal)
    : socket_(std::move(socket)),
      ssl_(SSL_new(ctx)),
      timer_(socket_.get_executor()),
      manager_(manager),
      conn_id_(conn_id),
      refusal_(std::move(refusal)),
      decoder_(manager.config().service.max_frame_mb << 20) {
  if (refusal_) ++manager_.refusing;
  boost::system::error_code ec;
  const auto ep = socket_.remote_endpoint(ec);
  peer_ = ec ? "unknown peer" : ep.address().to_string() + ":" + std::to_string(ep.port());
}

void Session::Start() {
  ArmTimer(manager_.config().service.handshake_timeout_s, "TLS handshake and Hello");
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
    if (self->registered_ && self->manager_.driver().Busy(self->conn_id_)) {
      // A client training on its task cannot answer heartbeats; the round's deadline bounds it.
      self->ArmTimer(self->manager_.config().service.idle_timeout_s, what);
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

void Session::Refuse(const v1::Envelope& error, const std::string& why) {
  spdlog::warn("refusing {} from {}: {}", identity_.empty() ? "a client" : identity_, peer_, why);
  Send(error);
  CloseAfterWrites();
}

void Session::CountTcpBytes() {
  if (!ssl_) return;
  const uint64_t read = BIO_number_read(SSL_get_rbio(ssl_.get()));
  const uint64_t written = BIO_number_written(SSL_get_wbio(ssl_.get()));
  manager_.tcp_bytes_in += read - tcp_read_;
  manager_.tcp_bytes_out += written - tcp_written_;
  tcp_read_ = read;
  tcp_written_ = written;
}

void Session::Stop() {
  if (stopped_) return;
  CountTcpBytes();
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
  // Identity = the CN of the verified client certificate. The handshake
  // already refused a peer without one; these guard the CN itself.
  X509* cert = SSL_get1_peer_certificate(ssl_.get());
  if (cert == nullptr) {
    Refuse(ErrorEnvelope(Error(ErrorCode::kUnauthenticated, "no client certificate")), "no client certificate");
    return;
  }
  char cn[256] = {0};
  const int len = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  X509_free(cert);
  if (len <= 0) {
    Refuse(ErrorEnvelope(Error(ErrorCode::kUnauthenticated, "client certificate has no CN")),
           "client certificate has no CN");
    return;
  }
  identity_ = cn;
  if (refusal_) {
    Refuse(*refusal_, refusal_->error().message());
    return;
  }
  if (manager_.Revoked(identity_)) {
    Refuse(ErrorEnvelope(Error(ErrorCode::kPermissionDenied, "identity " + identity_ + " is revoked")),
           "identity is revoked");
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
      OnReadEnd(e);
      return;
    }
    if (!OnRead(n)) return;
  }
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->DoRead(); });
}

void Session::OnReadEnd(int ssl_error) {
  const unsigned long first = ERR_peek_error();
  const bool eof = ssl_error == SSL_ERROR_ZERO_RETURN || (ssl_error == SSL_ERROR_SYSCALL && first == 0 && errno == 0) ||
                   (ssl_error == SSL_ERROR_SSL && ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
  if (eof) {
    ERR_clear_error();
    if (Status st = decoder_.Finish(); !st.ok()) {
      Fail(st.error().message());
      return;
    }
    spdlog::debug("connection {} ({}) closed by the peer", conn_id_, identity_);
  } else {
    spdlog::info("connection {} ({}) read error: {}", conn_id_, identity_, OpenSslError(ssl_error));
  }
  Stop();
}

bool Session::OnRead(size_t n) {
  manager_.wire_bytes_in += n;
  CountTcpBytes();
  if (registered_) ArmTimer(manager_.config().service.idle_timeout_s, "traffic (idle timeout)");
  if (Status st = decoder_.Feed(std::span(manager_.read_buffer.data(), n)); !st.ok()) {
    Fail(st.error().message());
    return false;
  }
  for (;;) {
    auto env = decoder_.Next();
    if (!env.ok()) {
      if (decoder_.foreign_version()) {
        // Told PROTOCOL_VERSION; a peer that cannot parse our Envelope sees
        // its foreign version instead, and stops just the same.
        ++manager_.connections_closed_on_error;
        Refuse(ProtocolVersionEnvelope(*decoder_.foreign_version()), env.error().message());
      } else {
        Fail(env.error().message());
      }
      return false;
    }
    if (!env->has_value()) {
      // For the dashboard: last seen, and whether an update is still arriving.
      if (registered_) manager_.Seen(identity_, decoder_.buffered() > 0);
      return true;
    }
    Dispatch(**env);
    if (stopped_ || closing_) return false;
  }
}

void Session::OnHello(const v1::Hello& hello) {
  RoundDriver& driver = manager_.driver();
  const double now = manager_.Now();
  if (hello.protocol_version() != kProtocolVersion) {
    Refuse(ProtocolVersionEnvelope(hello.protocol_version()),
           "Hello speaks protocol " + std::to_string(hello.protocol_version()));
    return;
  }
  if (hello.client_name() != identity_) {
    // The certificate is the identity; a Hello naming another is not authenticated as it.
    const Error e(ErrorCode::kUnauthenticated,
                  "Hello names client '" + hello.client_name() + "' but the certificate is for '" + identity_ + "'");
    Refuse(ErrorEnvelope(e), e.message());
    return;
  }
  auto reg = driver.OnHello(conn_id_, identity_, hello, now);
  if (!reg.ok()) {
    Refuse(ErrorEnvelope(reg.error()), "Hello refused: " + reg.error().message());
    return;
  }
  registered_ = true;
  ArmTimer(manager_.config().service.idle_timeout_s, "traffic (idle timeout)");
  v1::Envelope out;
  *out.mutable_register_() = *reg;
  Send(out);
  driver.Tick(now);  // may open a round that includes this client
}

void Session::Dispatch(const v1::Envelope& env) {
  if (!registered_) {
    if (env.body_case() != v1::Envelope::kHello) {
      Fail(std::string("expected Hello, got ") + EnvelopeKindName(env));
      return;
    }
    OnHello(env.hello());
    return;
  }
  RoundDriver& driver = manager_.driver();
  const double now = manager_.Now();
  switch (env.body_case()) {
    case v1::Envelope::kUpdate:
      driver.OnUpdate(conn_id_, env.update(), now);
      break;
    case v1::Envelope::kSecagg:
      driver.OnSecAgg(conn_id_, env.secagg(), now);
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

void Session::Send(const v1::Envelope& env) { Send(std::span(&env, 1)); }

void Session::Send(std::span<const v1::Envelope> envs) {
  if (stopped_ || closing_) return;
  const uint32_t limit = manager_.config().service.write_queue_limit;
  if (write_queue_.size() >= limit) {
    Fail("write queue over " + std::to_string(limit) + " messages (peer not reading)");
    return;
  }
  std::vector<uint8_t> frames;
  for (const v1::Envelope& env : envs) {
    auto bytes = EncodeEnvelope(env, manager_.config().service.max_frame_mb << 20);
    if (!bytes.ok()) {
      spdlog::error("cannot send a {} to {}: {}", EnvelopeKindName(env), identity_, bytes.error().message());
      return;
    }
    frames.insert(frames.end(), bytes->begin(), bytes->end());
  }
  write_queue_.push_back(std::move(frames));
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
  CountTcpBytes();
  if (!stopped_ && closing_ && write_queue_.empty()) Stop();
}

}  // namespace frugal::coordinator
