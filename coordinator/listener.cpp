#include "listener.h"

#include <spdlog/spdlog.h>

#include "frugal/proto/convert.h"
#include "session.h"
#include "session_manager.h"

namespace frugal::coordinator {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Listener::Listener(asio::io_context& io, tcp::acceptor acceptor, SSL_CTX* ctx, SessionManager& manager)
    : io_(io), acceptor_(std::move(acceptor)), ctx_(ctx), manager_(manager) {}

void Listener::Stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

void Listener::DoAccept() {
  acceptor_.async_accept(asio::make_strand(io_), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                           tcp::socket socket) {
    self->OnAccept(ec, std::move(socket));
  });
}

void Listener::OnAccept(const boost::system::error_code& ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted) return;
  if (ec) {
    spdlog::warn("accept failed: {}", ec.message());
  } else if (const uint32_t cap = manager_.config().service.max_connections; manager_.size() >= cap) {
    Refuse(std::move(socket), cap);
  } else {
    auto s = std::make_shared<Session>(std::move(socket), ctx_, manager_, ++next_conn_);
    manager_.Add(s);
    s->Start();
  }
  DoAccept();
}

void Listener::Refuse(tcp::socket socket, uint32_t cap) {
  ++manager_.connections_refused;
  if (manager_.refusing >= SessionManager::kMaxRefusing) {
    spdlog::warn("connection cap of {} reached and {} refusals under way; closing a connection", cap,
                 manager_.refusing);
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  // Told why over TLS, never registered. RESOURCE_EXHAUSTED rather than
  // UNAVAILABLE: the service is up and serving others, this server's own
  // limit is what is exhausted (an operator raises service.max_connections);
  // a client backs off and retries on either code.
  v1::Envelope refusal =
      ErrorEnvelope(ResourceExhaustedError("connection cap of " + std::to_string(cap) + " reached; retry later"));
  refusal.mutable_error()->set_reason("connection_cap");
  std::make_shared<Session>(std::move(socket), ctx_, manager_, ++next_conn_, std::move(refusal))->Start();
}

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
  if (ec) {
    return UnavailableError("cannot listen on " + address + ":" + std::to_string(port) + " for " + what + ": " +
                            ec.message());
  }
  return acc;
}

}  // namespace frugal::coordinator
