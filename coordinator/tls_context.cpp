#include "tls_context.h"

#include <openssl/ssl.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "frugal/core/openssl_error.h"

namespace frugal::coordinator {
namespace {

namespace ssl = boost::asio::ssl;

Status CheckTlsFile(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) {
    return NotFoundError("TLS file '" + path + "' does not exist (create it with `frugal-coordinator ca init`)");
  }
  if (std::filesystem::is_directory(st)) return InvalidArgumentError("TLS file '" + path + "' is a directory");
  return OkStatus();
}

}  // namespace

std::string OpenSslError(int ssl_error) {
  if (std::string queued = TakeOpenSslError(); !queued.empty()) return queued;
  if (ssl_error == SSL_ERROR_SYSCALL) return errno != 0 ? std::strerror(errno) : "connection closed";
  return "TLS error " + std::to_string(ssl_error);
}

Result<std::unique_ptr<ssl::context>> MakeServerContext(const ServiceConfig& s) {
  for (const std::string* f : {&s.server_cert, &s.server_key, &s.ca_cert}) FRUGAL_RETURN_IF_ERROR(CheckTlsFile(*f));
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  // TLS 1.3 only: nothing older is offered or accepted.
  if (SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION) != 1) {
    return InternalError("OpenSSL refuses to pin TLS 1.3");
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

}  // namespace frugal::coordinator
