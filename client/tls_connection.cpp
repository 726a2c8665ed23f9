#include "tls_connection.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <chrono>
#include <filesystem>

namespace frugal::client {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

Status CheckTlsFile(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) {
    return NotFoundError("TLS file '" + path + "' does not exist (issue it with `frugal-coordinator ca issue`)");
  }
  if (std::filesystem::is_directory(st)) return InvalidArgumentError("TLS file '" + path + "' is a directory");
  return OkStatus();
}

// Alerts a TLS server sends when it does not accept the client's certificate.
bool CertificateRefused(int reason) {
  switch (reason) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    // The server could not verify a signature of ours: a certificate from a
    // CA of the same name, or a key that does not match it.
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace

Result<std::unique_ptr<ssl::context>> MakeClientContext(const ClientConfig& config) {
  for (const std::string* f : {&config.ca_cert, &config.cert, &config.key}) FRUGAL_RETURN_IF_ERROR(CheckTlsFile(*f));
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  if (SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx->native_handle(), TLS1_3_VERSION) != 1) {
    return InternalError("OpenSSL refuses to pin TLS 1.3");
  }
  boost::system::error_code ec;
  ctx->load_verify_file(config.ca_cert, ec);
  if (ec) return InvalidArgumentError("CA certificate " + config.ca_cert + ": " + ec.message());
  ctx->use_certificate_chain_file(config.cert, ec);
  if (ec) return InvalidArgumentError("client certificate " + config.cert + ": " + ec.message());
  ctx->use_private_key_file(config.key, ssl::context::pem, ec);
  if (ec) return InvalidArgumentError("client key " + config.key + ": " + ec.message());
  ctx->set_verify_mode(ssl::verify_peer, ec);
  if (ec) return InternalError("setting peer verification: " + ec.message());
  return ctx;
}

Error TlsError(const boost::system::error_code& ec, const std::string& what) {
  if (ec.category() == asio::error::get_ssl_category() && CertificateRefused(ERR_GET_REASON(ec.value()))) {
    return Error(ErrorCode::kUnauthenticated, what + ": the coordinator does not accept this client's certificate (" +
                                                  ec.message() + ")");
  }
  if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
    return UnavailableError("the coordinator closed the connection");
  }
  return UnavailableError(what + ": " + ec.message());
}

Status TlsConnection::Connect(const std::string& host, uint16_t port, double timeout_s) {
  boost::system::error_code ec;
  tcp::resolver resolver(io_);
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return UnavailableError("resolving " + host + ": " + ec.message());
  boost::system::error_code op_ec = asio::error::would_block;
  asio::async_connect(stream_.lowest_layer(), endpoints,
                      [&](const boost::system::error_code& e, const tcp::endpoint&) { op_ec = e; });
  FRUGAL_RETURN_IF_ERROR(Wait(op_ec, timeout_s, "connect"));
  if (op_ec) return UnavailableError("connecting to " + host + ":" + std::to_string(port) + ": " + op_ec.message());
  op_ec = asio::error::would_block;
  stream_.async_handshake(ssl::stream_base::client, [&](const boost::system::error_code& e) { op_ec = e; });
  FRUGAL_RETURN_IF_ERROR(Wait(op_ec, timeout_s, "TLS handshake"));
  if (op_ec) return TlsError(op_ec, "TLS handshake with " + host);
  return OkStatus();
}

Status TlsConnection::Write(std::span<const uint8_t> bytes, double timeout_s) {
  boost::system::error_code op_ec = asio::error::would_block;
  asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()),
                    [&](const boost::system::error_code& e, size_t) { op_ec = e; });
  FRUGAL_RETURN_IF_ERROR(Wait(op_ec, timeout_s, "write"));
  if (op_ec) return TlsError(op_ec, "write");
  return OkStatus();
}

Result<size_t> TlsConnection::ReadSome(std::span<uint8_t> buf, double timeout_s) {
  boost::system::error_code op_ec = asio::error::would_block;
  size_t got = 0;
  stream_.async_read_some(asio::buffer(buf.data(), buf.size()), [&](const boost::system::error_code& e, size_t n) {
    op_ec = e;
    got = n;
  });
  FRUGAL_RETURN_IF_ERROR(Wait(op_ec, timeout_s, "read"));
  if (op_ec) return TlsError(op_ec, "read");
  return got;
}

void TlsConnection::Close() {
  boost::system::error_code ignored;
  stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.lowest_layer().close(ignored);
}

Status TlsConnection::Wait(boost::system::error_code& op_ec, double timeout_s, const char* what) {
  io_.restart();
  io_.run_for(std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  if (op_ec == asio::error::would_block) {
    Close();
    io_.restart();
    io_.run();  // let the cancelled handler run before its captures go out of scope
    return Error(ErrorCode::kDeadlineExceeded, std::string(what) + " timed out");
  }
  return OkStatus();
}

}  // namespace frugal::client
