// The coordinator's TLS: the server context (TLS 1.3 only, mutual
// authentication against the configured CA) and OpenSSL's errors as text.
// Private to coordinator/.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/ssl.hpp>

#include <memory>
#include <string>

#include "frugal/coordinator/config.h"
#include "frugal/core/status.h"

namespace frugal::coordinator {

// A TLS 1.3 server context with the server's certificate chain and key, and
// client certificates verified against ca_cert (a connection without one fails
// the handshake). Errors name the file: kNotFound if it does not exist,
// kInvalidArgument if it is a directory or OpenSSL refuses it.
Result<std::unique_ptr<boost::asio::ssl::context>> MakeServerContext(const ServiceConfig& service);

// The text of OpenSSL's first queued error (and the queue cleared), for logs;
// `ssl_error` is SSL_get_error's answer, used when the queue is empty.
std::string OpenSslError(int ssl_error);

}  // namespace frugal::coordinator
