#include "status_request.h"

#include <algorithm>
#include <cctype>

#include "frugal/core/text.h"

namespace frugal::coordinator {
namespace {

constexpr size_t kMaxHead = 8192;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}


// Equal strings, compared without an early exit at the first difference.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const char x = i < a.size() ? a[i] : 0, y = i < b.size() ? b[i] : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

}  // namespace

Result<StatusRequest> ParseStatusRequest(std::string_view head) {
  if (head.size() > kMaxHead) return InvalidArgumentError("request head over 8 KiB");
  const size_t line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) return InvalidArgumentError("request line does not end in CRLF");
  const std::string_view line = head.substr(0, line_end);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return InvalidArgumentError("request line is not 'METHOD TARGET HTTP/1.x'");
  }
  StatusRequest r;
  r.method = std::string(line.substr(0, sp1));
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (r.method.empty() || target.empty() || target.front() != '/') {
    return InvalidArgumentError("request target must be a path starting with '/'");
  }
  if (version != "HTTP/1.0" && version != "HTTP/1.1") return InvalidArgumentError("not HTTP/1.0 or HTTP/1.1");
  const size_t q = target.find('?');
  r.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));

  std::string_view rest = head.substr(line_end + 2);
  while (!rest.empty()) {
    const size_t end = rest.find("\r\n");
    const std::string_view field = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    if (field.empty()) break;  // the blank line that ends the head
    const size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) return InvalidArgumentError("header line without a name and ':'");
    if (Lower(field.substr(0, colon)) != "authorization") continue;
    const std::string_view value = TrimSpace(field.substr(colon + 1));
    if (value.size() > 7 && Lower(value.substr(0, 7)) == "bearer ") r.bearer = std::string(TrimSpace(value.substr(7)));
  }
  return r;
}

std::optional<std::string> QueryValue(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) != key || eq == std::string_view::npos) continue;
    std::string out;
    const std::string_view v = pair.substr(eq + 1);
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '+') {
        out += ' ';
      } else if (v[i] == '%') {
        if (i + 2 >= v.size() || HexDigit(v[i + 1]) < 0 || HexDigit(v[i + 2]) < 0) return std::nullopt;
        out += static_cast<char>(HexDigit(v[i + 1]) * 16 + HexDigit(v[i + 2]));
        i += 2;
      } else {
        out += v[i];
      }
    }
    return out;
  }
  return std::nullopt;
}

bool Authorized(const StatusRequest& request, std::string_view token) {
  if (token.empty()) return true;
  if (request.bearer && ConstantTimeEquals(*request.bearer, token)) return true;
  const std::optional<std::string> q = QueryValue(request.query, "access_token");
  return q && ConstantTimeEquals(*q, token);
}

}  // namespace frugal::coordinator
