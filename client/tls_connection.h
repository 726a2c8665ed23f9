// The agent's connection to the coordinator: TLS 1.3 with a client
// certificate, blocking calls each bounded by a timeout (each runs a private
// io_context until the operation completes or the time is up). Asio and
// OpenSSL errors become frugal Errors here: kUnauthenticated when the
// coordinator's TLS refused this client's certificate, kDeadlineExceeded on a
// timeout, kUnavailable otherwise. Private to client/.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "frugal/client/config.h"
#include "frugal/core/status.h"

namespace frugal::client {

// The client's TLS context: TLS 1.3 only, the coordinator verified against
// ca_cert, this client's certificate and key. Errors name the file: kNotFound
// if it does not exist, kInvalidArgument if it is a directory or unreadable.
Result<std::unique_ptr<boost::asio::ssl::context>> MakeClientContext(const ClientConfig& config);

// The Error of a failed TLS or socket operation `what`: kUnauthenticated when
// the peer's alert says it refused our certificate, kUnavailable otherwise.
Error TlsError(const boost::system::error_code& ec, const std::string& what);

class TlsConnection {
 public:
  explicit TlsConnection(boost::asio::ssl::context& ctx) : stream_(io_, ctx) {}
  ~TlsConnection() { Close(); }

  Status Connect(const std::string& host, uint16_t port, double timeout_s);
  Status Write(std::span<const uint8_t> bytes, double timeout_s);
  // Reads what is available (at least one byte); kDeadlineExceeded on timeout.
  Result<size_t> ReadSome(std::span<uint8_t> buf, double timeout_s);
  void Close();

 private:
  Status Wait(boost::system::error_code& op_ec, double timeout_s, const char* what);

  boost::asio::io_context io_;
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket> stream_;
};

}  // namespace frugal::client
