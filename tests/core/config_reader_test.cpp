#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "data/temp_dir.h"
#include "frugal/core/config_reader.h"
#include "frugal/energy/profiles.h"

namespace frugal {
namespace {

// toml++ 3.3.0's whitespace check reaches __builtin_unreachable() for these code
// points (and its parse_value() assumes U+0085, U+2028 and U+2029 are no value
// terminators); found by parsing every code point in every context below against
// a copy of the header that counts the unreachable branch.
std::vector<char32_t> CodePointsToml33Mishandles() {
  std::vector<char32_t> out = {0x85, 0x2028, 0x2029};
  auto add = [&](char32_t lo, char32_t hi) {
    for (char32_t c = lo; c <= hi; ++c) {
      if (c != 0x3000) out.push_back(c);  // the ideographic space is handled
    }
  };
  add(0xA1, 0x499);
  add(0x2F4E, 0x3347);
  add(0xFB06, 0xFEFE);
  return out;
}

std::string Utf8(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (c >> 18));
    s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
  return s;
}

struct Context {
  const char* name;
  std::string before, after;
};

bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST_SUITE("core") {
  TEST_CASE("TOML parsing refuses the two bytes CF 93 (the fuzzer's input), naming source, line and column") {
    auto r = ParseTomlWithOverrides("\xCF\x93", "scenario.toml", {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kInvalidArgument);
    CHECK(r.error().message() ==
          "scenario.toml:1:1: malformed TOML: character U+03D3 outside a string or comment (TOML allows only "
          "ASCII there)");
    // Columns count characters, past the UTF-8 that strings and comments keep.
    r = ParseTomlWithOverrides("name = \"\xC3\xA9t\xC3\xA9\" # \xC3\xA9\nrounds = 3 \xCF\x93\n", "s.toml", {});
    REQUIRE_FALSE(r.ok());
    CHECK(Contains(r.error().message(), "s.toml:2:12: malformed TOML: character U+03D3 outside"));
    // A byte that does not start UTF-8 is named as a byte.
    r = ParseTomlWithOverrides("a = 1\n\x93", "s.toml", {});
    REQUIRE_FALSE(r.ok());
    CHECK(Contains(r.error().message(), "s.toml:2:1: malformed TOML: character byte 0x93 outside"));
    // The energy profile files go through the same guard.
    auto profiles = EnergyProfiles::Parse("schema = 1\n\xCF\x93", "profiles.toml");
    REQUIRE_FALSE(profiles.ok());
    CHECK(Contains(profiles.error().message(), "profiles.toml:2:1: malformed TOML: character U+03D3"));
  }

  TEST_CASE("every code point toml++ 3.3.0 mishandles is refused wherever it would reach undefined behaviour") {
    const std::vector<Context> contexts = {
        {"start of the file", "", ""},
        {"a value", "v = ", ""},
        {"after a number", "v = 1", ""},
        {"after a string", "v = \"a\"", ""},
        {"between '=' and the value", "v =", "1"},
        {"a bare key", "k", " = 1"},
        {"a table header", "[a", "]"},
        {"an array", "v = [", "]"},
        {"an inline table", "v = {", "}"},
        {"after a date", "v = 1979-05-27", ""},
        {"after a closing \"\"\"\" (one quote is content)", "v = \"\"\"a\"\"\"\"", ""},
        {"after a closing ''''' (two quotes are content)", "v = '''a'''''", ""},
        {"after a literal string ending in a backslash", "v = 'a\\'", ""},
        {"after a comment's line", "# \"\n", ""},
        // A quote inside a bare value opens no string: toml++ scans on to a terminator.
        {"a quote after a sign (the fuzzer's second input)", "v = -'''", "'''"},
        {"a quote after a number", "v = 1\"", "\""},
        {"a quote after '=' in a value", "v = 1=\"", "\""},
        {"a quote after '[' in a value", "v = 1[\"", "\"]"},
        {"a quote after '.' in a value", "v = 1.\"", "\""},
        {"a quote after a date and a space", "v = 1979-05-27 \"", "\""},
        {"after an empty string", "v = \"\"", ""},
        {"a quote after a bare key", "ab\"", "\" = 1"},
        {"a second string after a value", "v = \"a\" \"", "\""},
        {"right after a backslash in a \"\"\" string", "v = \"\"\"\\", "\"\"\""},
        {"after a backslash and spaces in a \"\"\" string", "v = \"\"\"a\\  ", "\"\"\""},
        {"after a line-ending backslash", "v = \"\"\"a\\\n   ", "\"\"\""},
        {"after a line-ending backslash and blank lines", "v = \"\"\"a\\\r\n\n \n\t", "\"\"\""},
    };
    for (const Context& c : contexts) {
      int accepted = 0;
      for (char32_t cp : CodePointsToml33Mishandles()) {
        auto r = ParseTomlWithOverrides(c.before + Utf8(cp) + c.after, "x.toml", {});
        if (r.ok() || !Contains(r.error().message(), "malformed TOML: character U+")) ++accepted;
      }
      CHECK_MESSAGE(accepted == 0, c.name);
    }
  }

  TEST_CASE("UTF-8 in strings, quoted keys and comments parses and keeps its text") {
    const std::vector<Context> contexts = {
        {"a basic string", "v = \"", "\""},
        {"a literal string", "v = '", "'"},
        {"a \"\"\" string", "v = \"\"\"", "\"\"\""},
        {"a ''' string", "v = '''", "'''"},
        {"a \"\"\" string after a line-ending backslash's text", "v = \"\"\"a\\\n x", "\"\"\""},
        {"after an escaped quote", "v = \"\\\"", "\""},
        {"after a literal string's backslash", "v = '\\", "'"},
    };
    std::vector<char32_t> sample = CodePointsToml33Mishandles();
    for (char32_t cp = 0xA0; cp <= 0x10FFFF; cp += 97) {
      if (cp < 0xD800 || cp > 0xDFFF) sample.push_back(cp);
    }
    for (const Context& c : contexts) {
      int refused = 0;
      for (char32_t cp : sample) {
        auto r = ParseToml(c.before + Utf8(cp) + c.after, "x.toml");
        if (!r.ok() || !(*r)["v"].value<std::string>().value_or("").ends_with(Utf8(cp))) ++refused;
      }
      CHECK_MESSAGE(refused == 0, c.name);
    }
    // Strings wherever TOML's structure puts a key or a value.
    for (char32_t cp : sample) {
      const std::string u = Utf8(cp);
      const std::string text = "a=\"" + u + "\"\n[t.\"" + u + "\" . 'x']\nb = [1,\"" + u + "\", # " + u +
                               "\n  ['" + u + "']]\nc = { d = \"" + u + "\", e.\"" + u + "\" = 1 }\n[[s.'" + u +
                               "']]\nf = 1979-05-27 07:32:00Z # " + u + "\n";
      auto r = ParseToml(text, "x.toml");
      REQUIRE_MESSAGE(r.ok(), r.error().ToString());
      CHECK((*r)["a"].value<std::string>() == u);
      CHECK((*r)["t"][u]["x"]["b"][1].value<std::string>() == u);
      CHECK((*r)["t"][u]["x"]["b"][2][0].value<std::string>() == u);
      CHECK((*r)["t"][u]["x"]["c"]["e"][u].value<int64_t>() == 1);
      CHECK((*r)["s"][u][0]["f"].is_date_time());
      if (!r.ok()) break;
    }
    int refused = 0;
    for (char32_t cp : sample) {
      const std::string u = Utf8(cp);
      auto r = ParseToml("# " + u + " '\"\n\"k" + u + "\" = 1 # " + u + "\n'" + u + "' = \"" + u + "\"\n", "x.toml");
      if (!r.ok() || (*r)["k" + u].value<int64_t>() != 1 || (*r)[u].value<std::string>() != u) ++refused;
    }
    CHECK(refused == 0);
    // A UTF-8 byte order mark at the start is skipped, as toml++ does.
    auto bom = ParseToml("\xEF\xBB\xBFv = 1\n", "x.toml");
    REQUIRE_MESSAGE(bom.ok(), bom.error().ToString());
    CHECK((*bom)["v"].value<int64_t>() == 1);
    // Quotes inside a multi-line string are content until a run of three closes it.
    auto quotes = ParseToml("v = \"\"\"a\"\"b\"\"\"\"\"\nw = '''\xCF\x93''''\n", "x.toml");
    REQUIRE_MESSAGE(quotes.ok(), quotes.error().ToString());
    CHECK((*quotes)["v"].value<std::string>() == "a\"\"b\"\"");
    CHECK((*quotes)["w"].value<std::string>() == "\xCF\x93'");
  }

  TEST_CASE("an override whose value is not ASCII TOML is a string, and a malformed one is still refused") {
    auto t = ParseTomlWithOverrides("", "x.toml", {"name=\xCF\x93", "run.tag=\"\xCF\x93\"", "rounds=3"});
    REQUIRE_MESSAGE(t.ok(), t.error().ToString());
    CHECK((*t)["name"].value<std::string>() == "\xCF\x93");
    CHECK((*t)["run"]["tag"].value<std::string>() == "\xCF\x93");
    CHECK((*t)["rounds"].value<int64_t>() == 3);
    auto bad = ParseTomlWithOverrides("", "x.toml", {"novalue"});
    REQUIRE_FALSE(bad.ok());
    CHECK(Contains(bad.error().message(), "not of the form key=value"));
  }

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
