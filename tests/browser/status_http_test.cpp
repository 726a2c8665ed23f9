// The status port's I/O-free parts: the request-head parser (outside bytes:
// malformed heads are refused by name), the bearer-token rule (header or
// access_token query parameter, RFC 6750), the token file, and the
// configuration rule that a non-loopback status port needs a token.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "coordinator/status_http.h"
#include "data/temp_dir.h"
#include "frugal/coordinator/config.h"

namespace frugal::coordinator {
namespace {

TEST_SUITE("status_http") {
  TEST_CASE("a request head gives its method, path, query and bearer token") {
    auto r = ParseStatusRequest(
        "GET /api/state?access_token=abc%2Fdef&x=1 HTTP/1.1\r\nHost: h\r\nauthorization:  Bearer  tok123 \r\n\r\n");
    REQUIRE(r.ok());
    CHECK(r->method == "GET");
    CHECK(r->path == "/api/state");
    CHECK(r->query == "access_token=abc%2Fdef&x=1");
    REQUIRE(r->bearer.has_value());
    CHECK(*r->bearer == "tok123");
    CHECK(QueryValue(r->query, "access_token") == "abc/def");
    CHECK(QueryValue(r->query, "x") == "1");
    CHECK_FALSE(QueryValue(r->query, "y").has_value());
    CHECK_FALSE(QueryValue("access_token=%zz", "access_token").has_value());
    CHECK_FALSE(QueryValue("access_token=%4", "access_token").has_value());

    auto plain = ParseStatusRequest("GET / HTTP/1.0\r\n\r\n");
    REQUIRE(plain.ok());
    CHECK(plain->path == "/");
    CHECK_FALSE(plain->bearer.has_value());
  }

  TEST_CASE("malformed request heads are refused with what was wrong") {
    const auto message = [](std::string_view head) {
      auto r = ParseStatusRequest(head);
      REQUIRE_FALSE(r.ok());
      return r.error().message();
    };
    CHECK(message("GET /") .find("CRLF") != std::string::npos);
    CHECK(message("GET\r\n\r\n").find("request line") != std::string::npos);
    CHECK(message("GET / HTTP/1.0 extra\r\n\r\n").find("request line") != std::string::npos);
    CHECK(message("GET status HTTP/1.0\r\n\r\n").find("'/'") != std::string::npos);
    CHECK(message("GET / HTTP/2\r\n\r\n").find("HTTP/1.0") != std::string::npos);
    CHECK(message("GET / HTTP/1.0\r\nno colon here\r\n\r\n").find("':'") != std::string::npos);
    CHECK(message("GET / HTTP/1.0\r\n" + std::string(9000, 'a') + "\r\n\r\n").find("8 KiB") != std::string::npos);
  }

  TEST_CASE("with a token, only requests carrying it are authorized") {
    StatusRequest r;
    CHECK(Authorized(r, ""));  // loopback without a token: open
    CHECK_FALSE(Authorized(r, "s3cret-token-0123456789"));
    r.bearer = "s3cret-token-0123456789";
    CHECK(Authorized(r, "s3cret-token-0123456789"));
    r.bearer = "s3cret-token-012345678";  // a prefix is not the token
    CHECK_FALSE(Authorized(r, "s3cret-token-0123456789"));
    r.bearer = "s3cret-token-01234567890";
    CHECK_FALSE(Authorized(r, "s3cret-token-0123456789"));
    r.bearer.reset();
    r.query = "access_token=s3cret-token-0123456789";
    CHECK(Authorized(r, "s3cret-token-0123456789"));
    r.query = "access_token=wrong";
    CHECK_FALSE(Authorized(r, "s3cret-token-0123456789"));
  }

  TEST_CASE("the token file must hold one long printable token") {
    testing::TempDir dir;
    ServiceConfig s;
    auto none = LoadStatusToken(s);
    REQUIRE(none.ok());
    CHECK(none->empty());
    const auto write = [&](const std::string& text) {
      s.status_token_file = dir.Path("token");
      std::ofstream(s.status_token_file) << text;
    };
    write("  0123456789abcdef-xyz\n");
    auto good = LoadStatusToken(s);
    REQUIRE(good.ok());
    CHECK(*good == "0123456789abcdef-xyz");
    write("short\n");
    auto short_token = LoadStatusToken(s);
    REQUIRE_FALSE(short_token.ok());
    CHECK(short_token.error().message().find("fewer than 16") != std::string::npos);
    write("0123456789 abcdef0123\n");
    CHECK_FALSE(LoadStatusToken(s).ok());
    s.status_token_file = dir.Path("missing");
    auto missing = LoadStatusToken(s);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().message().find("cannot read") != std::string::npos);
  }

  TEST_CASE("a status port bound beyond loopback needs a token file") {
    auto open = ParseCoordinatorConfig("", "(test)", {"service.status_address=\"0.0.0.0\""});
    REQUIRE_FALSE(open.ok());
    CHECK(open.error().message().find("service.status_token_file") != std::string::npos);
    CHECK(ParseCoordinatorConfig("", "(test)", {"service.status_address=\"0.0.0.0\"",
                                               "service.status_token_file=\"/etc/frugal/status.token\""})
              .ok());
    CHECK(ParseCoordinatorConfig("", "(test)", {"service.status_address=\"127.0.0.1\""}).ok());
    CHECK(ParseCoordinatorConfig("", "(test)", {"service.status_address=\"::1\""}).ok());
  }

  TEST_CASE("/status carries measured against modelled compute energy per device class") {
    DriverMetrics m;
    nlohmann::json plain = nlohmann::json::parse(StatusJson(m, "r1"));
    CHECK(plain["energy_measured_vs_modelled"].empty());
    m.measured_vs_modelled["rpi4"] = MeasuredVsModelled{.rows = 4, .measured_j = 9.0, .modelled_j = 12.0};
    nlohmann::json j = nlohmann::json::parse(StatusJson(m, "r1"));
    CHECK(j["energy_measured_vs_modelled"]["rpi4"]["rows"] == 4);
    CHECK(j["energy_measured_vs_modelled"]["rpi4"]["ratio"].get<double>() == doctest::Approx(0.75));
  }

  TEST_CASE("/status carries the DP epsilon, delta, the bound's labels and an early stop's reason only for a run that has them") {
    DriverMetrics m;
    nlohmann::json plain = nlohmann::json::parse(StatusJson(m, "r1"));
    CHECK_FALSE(plain.contains("dp_epsilon"));
    CHECK_FALSE(plain.contains("stop_reason"));
    CHECK_FALSE(plain.contains("dp_noise_multiplier"));
    CHECK_FALSE(plain.contains("dp_sampling"));
    CHECK_FALSE(plain.contains("dp_adjacency"));
    CHECK_FALSE(plain.contains("dp_bound"));
    m.dp_epsilon = 2.5;
    m.dp_delta = 1e-5;
    m.dp_noise_multiplier = 1.25;
    m.stop_reason = "privacy budget: round 7 would take epsilon from 2.5 to 2.7, past privacy.target_epsilon = 2.6";
    m.dp_sampling = "fixed_size";
    m.dp_adjacency = "replace_one";
    m.dp_bound = "approximate: round.selection = \"energy\" gives clients unequal chances";
    nlohmann::json j = nlohmann::json::parse(StatusJson(m, "r1"));
    CHECK(j["dp_epsilon"].get<double>() == 2.5);
    CHECK(j["dp_delta"].get<double>() == 1e-5);
    CHECK(j["dp_noise_multiplier"].get<double>() == 1.25);  // given or derived from privacy.target_epsilon
    CHECK(j["stop_reason"].get<std::string>().find("round 7") != std::string::npos);
    // What the epsilon is a bound for, beside it (summary.json's labels).
    CHECK(j["dp_sampling"] == "fixed_size");
    CHECK(j["dp_adjacency"] == "replace_one");
    CHECK(j["dp_bound"] == "approximate: round.selection = \"energy\" gives clients unequal chances");
  }
}

}  // namespace
}  // namespace frugal::coordinator
