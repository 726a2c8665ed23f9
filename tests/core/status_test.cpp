#include <doctest/doctest.h>

#include "frugal/core/status.h"

namespace frugal {
namespace {

Result<int> ParsePositive(int x) {
  if (x <= 0) return InvalidArgumentError("not positive: " + std::to_string(x));
  return x;
}

Result<int> Doubled(int x) {
  FRUGAL_ASSIGN_OR_RETURN(int v, ParsePositive(x));
  return 2 * v;
}

Status Check(int x) {
  FRUGAL_RETURN_IF_ERROR(ParsePositive(x).status());
  return OkStatus();
}

TEST_SUITE("core") {
  TEST_CASE("a Result carries either its value or the error that named the problem") {
    auto good = Doubled(21);
    REQUIRE(good.ok());
    CHECK(*good == 42);
    auto bad = Doubled(-1);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code() == ErrorCode::kInvalidArgument);
    CHECK(bad.error().ToString() == "INVALID_ARGUMENT: not positive: -1");
  }

  TEST_CASE("RETURN_IF_ERROR propagates and context prefixes the message") {
    CHECK(Check(3).ok());
    Status s = Check(0);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().WithContext("config").message() == "config: not positive: 0");
  }
}

}  // namespace
}  // namespace frugal
