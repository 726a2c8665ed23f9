#include <doctest/doctest.h>

#include <string>

#include "data/temp_dir.h"
#include "frugal/core/config_reader.h"

namespace frugal {
namespace {

TEST_SUITE("core") {
  TEST_CASE("reading a configuration refuses a directory, naming it, and reads a file") {
    testing::TempDir dir;
    const std::string file = dir.WriteText("run.toml", "rounds = 3\n");
    auto text = ReadTextFile(file);
    REQUIRE_MESSAGE(text.ok(), text.error().ToString());
    CHECK(*text == "rounds = 3\n");

    // std::ifstream opens a directory and reads it as empty text: that must not
    // become an empty configuration that runs on defaults.
    const std::string folder = dir.Path("");
    auto refused = ReadTextFile(folder);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == ErrorCode::kInvalidArgument);
    CHECK(refused.error().message() == folder + " is a directory");

    auto missing = ReadTextFile(dir.Path("absent.toml"));
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code() == ErrorCode::kNotFound);
    CHECK(missing.error().message().find(dir.Path("absent.toml")) != std::string::npos);
  }
}

}  // namespace
}  // namespace frugal
