// One client connection of the coordinator: the TLS handshake, frames in and
// Envelopes out, a bounded write queue, the handshake and idle timers. It
// turns bytes into messages and hands them to the round driver; it decides
// only what belongs to the connection (identity, protocol version, refusals).
// Private to coordinator/; every handler runs on the one I/O thread.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <openssl/ssl.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frugal/proto/frame.h"

namespace frugal::coordinator {

class SessionManager;

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;

// TLS runs in OpenSSL directly on the non-blocking socket: the session waits
// for readiness with Asio and calls SSL_do_handshake/SSL_read_ex/SSL_write_ex
// itself. Compared with asio::ssl::stream this keeps no per-connection copy
// buffers (its two 17 KiB stream buffers and the two 17 KiB halves of its BIO
// pair); with SSL_MODE_RELEASE_BUFFERS an idle connection holds only the SSL
// object, and plaintext is read through the manager's one shared buffer.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // A refusing session (`refusal` set, an Error envelope) completes the TLS
  // handshake only to send the refusal, then closes; it is never registered.
  Session(boost::asio::ip::tcp::socket socket, SSL_CTX* ctx, SessionManager& manager, uint64_t conn_id,
          std::optional<v1::Envelope> refusal = std::nullopt);
  void Start();
  // Queues one message; closes the session if the queue is over its bound.
  void Send(const v1::Envelope& env);
  // Several messages framed into one write, so they share TLS records.
  void Send(std::span<const v1::Envelope> envs);
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
  // Feeds `n` plaintext bytes to the decoder and dispatches whole Envelopes;
  // false once the session is closing.
  bool OnRead(size_t n);
  // Adds the TCP bytes OpenSSL's socket BIOs moved since the last call to the manager's counters.
  void CountTcpBytes();
  void OnReadEnd(int ssl_error);
  void Dispatch(const v1::Envelope& env);
  void OnHello(const v1::Hello& hello);
  void DoWrite();
  void ArmTimer(double seconds, const char* what);
  // Closes with a log line and the closed-on-error counter.
  void Fail(const std::string& why);
  // Sends `error`, then closes (counted as closed on error).
  void Refuse(const v1::Envelope& error, const std::string& why);

  boost::asio::ip::tcp::socket socket_;
  SslPtr ssl_;
  boost::asio::steady_timer timer_;
  SessionManager& manager_;
  uint64_t conn_id_;
  uint64_t tcp_read_ = 0, tcp_written_ = 0;  // BIO totals already counted
  std::string peer_;
  std::string identity_;
  std::optional<v1::Envelope> refusal_;
  bool registered_ = false;
  bool closing_ = false;
  bool stopped_ = false;
  bool read_waiting_ = false;   // a readiness wait for DoRead is pending
  bool write_waiting_ = false;  // a readiness wait for DoWrite is pending
  EnvelopeDecoder decoder_;
  std::deque<std::vector<uint8_t>> write_queue_;
  size_t write_offset_ = 0;  // bytes of write_queue_.front() already written
};

}  // namespace frugal::coordinator
