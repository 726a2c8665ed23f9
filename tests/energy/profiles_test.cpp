#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "energy/test_profiles.h"
#include "frugal/core/random.h"
#include "frugal/energy/profiles.h"
#include "frugal/test_source_dir.h"

namespace frugal {
namespace {

using energy_test::BaseWith;
using energy_test::kBaseToml;

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// The message of a failed Parse() of `text`; fails the test if it parsed.
std::string ParseError(const std::string& text) {
  auto r = EnergyProfiles::Parse(text, "test.toml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == ErrorCode::kInvalidArgument);
  return r.error().message();
}

TEST_SUITE("energy") {
  TEST_CASE("the shipped profiles load and contain every required id") {
    auto p = EnergyProfiles::LoadDefault();
    REQUIRE_MESSAGE(p.ok(), p.status().ToString());
    for (const char* id : {"phone-low", "phone-mid", "phone-flagship", "rpi4", "jetson-orin-nano", "laptop", "mcu"}) {
      CHECK_MESSAGE(p->Device(id).ok(), id);
    }
    for (const char* id : {"wifi", "lte", "5g", "3g", "ethernet"}) CHECK_MESSAGE(p->Radio(id).ok(), id);
    for (const char* id : {"world", "EU", "US", "CN", "IN", "DE", "FR", "UK", "JP", "BR", "CA", "AU", "SE", "PL", "ZA"}) {
      CHECK_MESSAGE(p->Region(id).ok(), id);
    }
    CHECK(p->Mix("default").ok());
    CHECK(p->server_watts() > 0);
    CHECK(p->server_pue() == doctest::Approx(1.58));  // Uptime Institute, via carbontracker
    CHECK(p->Region(p->server_region()).ok());
    // Spot checks against the sources named in docs/energy-model.md.
    CHECK((*p->Region("world"))->gco2e_per_kwh == 473);  // Ember 2024
    CHECK((*p->Region("FR"))->gco2e_per_kwh == 44);
    CHECK((*p->Radio("lte"))->tail_seconds == doctest::Approx(11.6));  // Huang et al. 2012
    CHECK((*p->Radio("lte"))->bandwidth_down_bps == doctest::Approx(13e6));
  }

  TEST_CASE("the built-in profiles equal common/energy/profiles.toml, so no source tree is needed at run time") {
    auto built_in = EnergyProfiles::LoadDefault();
    auto file = EnergyProfiles::LoadFile(std::string(FRUGAL_SOURCE_DIR) + "/common/energy/profiles.toml");
    REQUIRE(built_in.ok());
    REQUIRE(file.ok());
    REQUIRE(built_in->devices().size() == file->devices().size());
    for (size_t i = 0; i < file->devices().size(); ++i) {
      CHECK(built_in->devices()[i].id == file->devices()[i].id);
      CHECK(built_in->devices()[i].joules_per_flop_fp32 == file->devices()[i].joules_per_flop_fp32);
    }
    REQUIRE(built_in->radios().size() == file->radios().size());
    for (size_t i = 0; i < file->radios().size(); ++i) {
      CHECK(built_in->radios()[i].id == file->radios()[i].id);
      CHECK(built_in->radios()[i].tail_seconds == file->radios()[i].tail_seconds);
    }
    CHECK(built_in->regions().size() == file->regions().size());
    CHECK(built_in->server_watts() == file->server_watts());
  }

  TEST_CASE("shipped device figures follow the documented derivation and respect the arithmetic floor") {
    auto p = EnergyProfiles::LoadDefault();
    REQUIRE(p.ok());
    for (const DeviceProfile& d : p->devices()) {
      INFO(d.id);
      // docs/energy-model.md: joules per FLOP = active watts / sustained FLOP/s.
      CHECK(d.joules_per_flop_fp32 == doctest::Approx(d.active_watts / d.flops_per_s_fp32).epsilon(1e-9));
      // An int8 op (priced only when a client reports int8 FLOPs) never costs more than an fp32 FLOP.
      CHECK(d.joules_per_flop_int8 <= d.joules_per_flop_fp32);
      // Horowitz 2014 (45 nm): fp32 add 0.9 pJ + mult 3.7 pJ per 2 FLOPs = 2.3 pJ/FLOP;
      // int8 add 0.03 + mult 0.2 per 2 ops = 0.115 pJ/op. No device beats bare arithmetic.
      CHECK(d.joules_per_flop_fp32 >= 2.3e-12);
      CHECK(d.joules_per_flop_int8 >= 0.115e-12);
    }
  }

  TEST_CASE("shipped cellular radios cost more per bit up than down") {
    auto p = EnergyProfiles::LoadDefault();
    REQUIRE(p.ok());
    for (const char* id : {"lte", "5g", "3g"}) {
      const RadioProfile* r = *p->Radio(id);
      INFO(id);
      CHECK(r->joules_per_bit_up > r->joules_per_bit_down);
      CHECK(r->tail_watts * r->tail_seconds > 1.0);  // a cellular tail costs joules, not millijoules
    }
  }

  TEST_CASE("lookups ignore case and an unknown id names itself and the known ids") {
    auto p = EnergyProfiles::LoadDefault();
    REQUIRE(p.ok());
    auto us = p->Region("us");
    REQUIRE(us.ok());
    CHECK((*us)->id == "US");
    auto toaster = p->Device("toaster");
    REQUIRE_FALSE(toaster.ok());
    CHECK(toaster.error().code() == ErrorCode::kNotFound);
    CHECK(Contains(toaster.error().message(), "toaster"));
    CHECK(Contains(toaster.error().message(), "phone-mid"));
    CHECK_FALSE(p->Radio("carrier-pigeon").ok());
    CHECK_FALSE(p->Region("Atlantis").ok());
  }

  TEST_CASE("the test profile set parses with the values written in it") {
    auto p = EnergyProfiles::Parse(kBaseToml, "base");
    REQUIRE_MESSAGE(p.ok(), p.status().ToString());
    const DeviceProfile* d1 = *p->Device("d1");
    CHECK(d1->flops_per_s_fp32 == 1e10);
    CHECK(d1->joules_per_flop_int8 == 5e-11);
    CHECK(d1->active_watts == 2.0);  // an integer in TOML reads as a number
    const RegionProfile* x = *p->Region("X");
    CHECK(x->gco2e_per_kwh == 500);
    CHECK_FALSE(x->hourly_gco2e_per_kwh.has_value());
    CHECK(x->utc_offset_hours == 0);
    CHECK(p->server_watts() == 10);
    CHECK(p->server_pue() == 1.5);
    const ClassMix* m = *p->Mix("m");
    REQUIRE(m->devices.size() == 2);
    CHECK(PickWeighted(m->devices, 0.0) == "d1");
    CHECK(PickWeighted(m->devices, 0.74) == "d1");  // d1 holds [0, 0.75)
    CHECK(PickWeighted(m->devices, 0.76) == "d2");
    CHECK(PickWeighted(m->devices, 1.0) == "d2");
    CHECK(PickWeighted({}, 0.5).empty());
  }

  TEST_CASE("user overrides replace the fields they give and add new entries") {
    auto base = EnergyProfiles::LoadDefault();
    REQUIRE(base.ok());
    const double mid_flops = (*base->Device("phone-mid"))->flops_per_s_fp32;
    const double lte_tail_watts = (*base->Radio("lte"))->tail_watts;
    auto user = EnergyProfiles::ParseOverride(R"(
[server]
pue = 1.2

[devices.phone-mid]
active_watts = 4.0

[devices.watch]
flops_per_s_fp32 = 1e9
joules_per_flop_fp32 = 5e-10
joules_per_flop_int8 = 2.5e-10
active_watts = 0.5

[radios.LTE]
tail_seconds = 5

[regions.FR]
hourly_gco2e_per_kwh = [30,30,30,30,30,30,40,50,50,50,40,40,40,40,40,40,50,60,60,60,50,40,30,30]

[regions.mars]
gco2e_per_kwh = 0
utc_offset_hours = -3

[mixes.wearables]
devices = { watch = 1 }
radios = { lte = 1 }
regions = { mars = 1 }
)",
                                             "user.toml");
    REQUIRE_MESSAGE(user.ok(), user.status().ToString());
    REQUIRE(base->MergeOverride(*user).ok());

    const DeviceProfile* mid = *base->Device("phone-mid");
    CHECK(mid->active_watts == 4.0);             // replaced
    CHECK(mid->flops_per_s_fp32 == mid_flops);   // kept
    CHECK((*base->Device("watch"))->joules_per_flop_int8 == 2.5e-10);  // added
    const RadioProfile* lte = *base->Radio("lte");
    CHECK(lte->tail_seconds == 5.0);
    CHECK(lte->tail_watts == lte_tail_watts);
    const RegionProfile* fr = *base->Region("FR");
    CHECK(fr->gco2e_per_kwh == 44);
    REQUIRE(fr->hourly_gco2e_per_kwh.has_value());
    CHECK((*fr->hourly_gco2e_per_kwh)[18] == 60);
    CHECK((*base->Region("mars"))->utc_offset_hours == -3);
    CHECK(base->server_pue() == 1.2);
    CHECK(base->server_watts() > 0);
    CHECK(base->Mix("wearables").ok());
    CHECK(base->Mix("default").ok());
  }

  TEST_CASE("a user override file on disk merges over the shipped file") {
    std::string path = (std::filesystem::temp_directory_path() /
                        ("frugal_energy_override_" + std::to_string(::getpid()) + ".toml"))
                           .string();
    {
      std::ofstream out(path);
      out << "[regions.US]\ngco2e_per_kwh = 350\n";
    }
    auto p = EnergyProfiles::LoadDefaultWithOverride(path);
    std::remove(path.c_str());
    REQUIRE_MESSAGE(p.ok(), p.status().ToString());
    CHECK((*p->Region("US"))->gco2e_per_kwh == 350);
    CHECK((*p->Region("US"))->utc_offset_hours == -6);
  }

  TEST_CASE("an override that is incomplete or dangling is rejected and changes nothing") {
    auto base = EnergyProfiles::Parse(kBaseToml, "base");
    REQUIRE(base.ok());

    auto partial_new = EnergyProfiles::ParseOverride("[devices.d9]\nactive_watts = 3\n", "user.toml");
    REQUIRE(partial_new.ok());
    Status s = base->MergeOverride(*partial_new);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code() == ErrorCode::kInvalidArgument);
    CHECK(Contains(s.error().message(), "d9"));
    CHECK(Contains(s.error().message(), "flops_per_s_fp32"));
    CHECK_FALSE(base->Device("d9").ok());

    auto dangling = EnergyProfiles::ParseOverride("[mixes.m]\ndevices = { toaster = 1 }\n", "user.toml");
    REQUIRE(dangling.ok());
    s = base->MergeOverride(*dangling);
    REQUIRE_FALSE(s.ok());
    CHECK(Contains(s.error().message(), "toaster"));
    REQUIRE((*base->Mix("m"))->devices.size() == 2);  // unchanged

    // A complete new entry with a dangling mix in the same file: nothing of it lands.
    auto half = EnergyProfiles::ParseOverride(
        "[devices.d8]\nflops_per_s_fp32 = 1e9\njoules_per_flop_fp32 = 1e-9\njoules_per_flop_int8 = 1e-10\n"
        "active_watts = 1\n[mixes.m]\nradios = { smoke = 1 }\n",
        "user.toml");
    REQUIRE(half.ok());
    s = base->MergeOverride(*half);
    REQUIRE_FALSE(s.ok());
    CHECK(Contains(s.error().message(), "smoke"));
    CHECK_FALSE(base->Device("d8").ok());

    // Values in an override are checked as they are parsed.
    auto negative = EnergyProfiles::ParseOverride("[radios.r1]\ntail_watts = -1\n", "user.toml");
    REQUIRE_FALSE(negative.ok());
    CHECK(Contains(negative.error().message(), "radios.r1.tail_watts"));
  }

  TEST_CASE("a profile with a missing field names the entry and the field") {
    std::string m = ParseError(BaseWith("joules_per_flop_int8 = 5e-11\n", ""));
    CHECK(Contains(m, "test.toml"));
    CHECK(Contains(m, "devices.d1.joules_per_flop_int8"));
    CHECK(Contains(m, "missing"));
    m = ParseError(BaseWith("tail_seconds = 10\n", ""));
    CHECK(Contains(m, "radios.r1.tail_seconds"));
    m = ParseError(BaseWith("gco2e_per_kwh = 500\n", ""));
    CHECK(Contains(m, "regions.X.gco2e_per_kwh"));
    m = ParseError(BaseWith("pue = 1.5\n", ""));
    CHECK(Contains(m, "server.pue"));
  }

  TEST_CASE("negative, zero and non-finite values are rejected with the field named") {
    std::string m = ParseError(BaseWith("joules_per_bit_up = 5e-7", "joules_per_bit_up = -5e-7"));
    CHECK(Contains(m, "radios.r1.joules_per_bit_up"));
    CHECK(Contains(m, "> 0"));
    m = ParseError(BaseWith("flops_per_s_fp32 = 1e10", "flops_per_s_fp32 = 0"));
    CHECK(Contains(m, "devices.d1.flops_per_s_fp32"));
    m = ParseError(BaseWith("joules_per_flop_fp32 = 2e-10", "joules_per_flop_fp32 = nan"));
    CHECK(Contains(m, "devices.d1.joules_per_flop_fp32"));
    CHECK(Contains(m, "finite"));
    m = ParseError(BaseWith("gco2e_per_kwh = 500", "gco2e_per_kwh = inf"));
    CHECK(Contains(m, "finite"));
    m = ParseError(BaseWith("pue = 1.5", "pue = 0.9"));
    CHECK(Contains(m, "server.pue"));
    m = ParseError(BaseWith("gco2e_per_kwh = 500", "gco2e_per_kwh = 500\nutc_offset_hours = 30"));
    CHECK(Contains(m, "utc_offset_hours"));
    m = ParseError(BaseWith("active_watts = 2", "active_watts = \"two\""));
    CHECK(Contains(m, "must be a number"));
  }

  TEST_CASE("a reference to an unknown device, radio or region is rejected") {
    std::string m = ParseError(BaseWith("devices = { d1 = 3, d2 = 1 }", "devices = { d1 = 3, toaster = 1 }"));
    CHECK(Contains(m, "mixes.m.devices"));
    CHECK(Contains(m, "toaster"));
    m = ParseError(BaseWith("radios = { r1 = 1 }", "radios = { smoke-signal = 1 }"));
    CHECK(Contains(m, "smoke-signal"));
    m = ParseError(BaseWith("region = \"X\"", "region = \"Y\""));
    CHECK(Contains(m, "server.region"));
    CHECK(Contains(m, "'Y'"));
  }

  TEST_CASE("malformed TOML, unknown keys and bad shapes give clear errors") {
    std::string m = ParseError("[devices.d1\nflops = 1\n");
    CHECK(Contains(m, "malformed TOML"));
    CHECK(Contains(m, "test.toml:1"));
    m = ParseError(BaseWith("active_watts = 2", "active_watts = 2\nactive_wats = 2"));
    CHECK(Contains(m, "devices.d1.active_wats is not a known field"));
    // Fields no code read were removed from the schema; an old file is told which line to delete.
    for (const char* removed : {"idle_watts = 0.5", "battery_wh = 10", "flops_per_s_int8 = 4e10"}) {
      m = ParseError(BaseWith("active_watts = 2", std::string("active_watts = 2\n") + removed));
      CHECK(Contains(m, "is no longer a profile field"));
    }
    m = ParseError(BaseWith("schema = 1", "schema = 2"));
    CHECK(Contains(m, "schema"));
    m = ParseError(std::string(kBaseToml) + "[gadgets.g]\nx = 1\n");
    CHECK(Contains(m, "gadgets"));
    m = ParseError(BaseWith("gco2e_per_kwh = 500", "gco2e_per_kwh = 500\nhourly_gco2e_per_kwh = [1, 2, 3]"));
    CHECK(Contains(m, "24 numbers"));
    m = ParseError(std::string(kBaseToml) + "[regions.x]\ngco2e_per_kwh = 1\n");
    CHECK(Contains(m, "defined twice"));
    m = ParseError(BaseWith("[devices.d2]", "[devices.\"a,b\"]"));
    CHECK(Contains(m, "comma"));
  }

  TEST_CASE("mutated profile text is either rejected with an error or parses into valid values") {
    // Adversarial input for the parser (a user file is outside input): random
    // byte flips, insertions and deletions of a valid file, never a crash.
    Rng rng(20261126);
    const std::string base(kBaseToml);
    const char kAlphabet[] = "=[]{}\",.-+e0123456789abcxyz \n#\x00\xff";
    size_t parsed = 0;
    for (int iter = 0; iter < 2000; ++iter) {
      std::string text = base;
      const int edits = 1 + static_cast<int>(rng.UniformInt(4));
      for (int e = 0; e < edits && !text.empty(); ++e) {
        size_t at = static_cast<size_t>(rng.UniformInt(text.size()));
        char c = kAlphabet[rng.UniformInt(sizeof(kAlphabet) - 1)];
        switch (rng.UniformInt(3)) {
          case 0: text[at] = c; break;
          case 1: text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c); break;
          default: text.erase(at, 1); break;
        }
      }
      for (bool override_mode : {false, true}) {
        auto r = override_mode ? EnergyProfiles::ParseOverride(text, "mutant") : EnergyProfiles::Parse(text, "mutant");
        if (!r.ok()) {
          CHECK_FALSE(r.error().message().empty());
          continue;
        }
        ++parsed;
        for (const DeviceProfile& d : r->devices()) {
          CHECK(std::isfinite(d.joules_per_flop_fp32));
          CHECK(d.active_watts > 0);
        }
        for (const RadioProfile& radio : r->radios()) {
          CHECK(std::isfinite(radio.tail_seconds));
          CHECK(radio.tail_watts >= 0);
        }
      }
    }
    CHECK(parsed > 0);  // some mutations (in comments, digits) stay valid
  }

  TEST_CASE("a profile file that does not exist is NotFound") {
    auto r = EnergyProfiles::LoadFile("/nonexistent/frugal/profiles.toml");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == ErrorCode::kNotFound);
    CHECK(Contains(r.error().message(), "/nonexistent/frugal/profiles.toml"));
  }
}

}  // namespace
}  // namespace frugal
