// The coordinator's accept loop: each TCP connection becomes a Session, or,
// beyond service.max_connections, a refusing one that says so. Private to
// coordinator/.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>

#include "frugal/core/status.h"

namespace frugal::coordinator {

class SessionManager;

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(boost::asio::io_context& io, boost::asio::ip::tcp::acceptor acceptor, SSL_CTX* ctx,
           SessionManager& manager);
  void Start() { DoAccept(); }
  // Stops accepting; sessions already open carry on.
  void Stop();

 private:
  void DoAccept();
  void OnAccept(const boost::system::error_code& ec, boost::asio::ip::tcp::socket socket);
  void Refuse(boost::asio::ip::tcp::socket socket, uint32_t cap);

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  SSL_CTX* ctx_;
  SessionManager& manager_;
  uint64_t next_conn_ = 0;
};

// A listening acceptor on address:port (0: any free port). kInvalidArgument if
// the address is not an IP address, kUnavailable if it cannot be bound.
Result<boost::asio::ip::tcp::acceptor> Bind(boost::asio::io_context& io, const std::string& address, uint32_t port,
                                            const std::string& what);

}  // namespace frugal::coordinator
