#include "frugal/core/openssl_error.h"

#include <openssl/err.h>

namespace frugal {

std::string TakeOpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return {};
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

Error OpenSslFailure(std::string_view what) {
  std::string queued = TakeOpenSslError();
  if (queued.empty()) queued = "no OpenSSL error queued";
  return InternalError(std::string(what) + ": " + queued);
}

}  // namespace frugal
