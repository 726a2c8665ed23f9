#include <doctest/doctest.h>

#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "frugal/energy/meter.h"

namespace frugal {
namespace {

namespace fs = std::filesystem;

// A temporary directory laid out like /sys/class/powercap, removed on exit.
class FakePowercap {
 public:
  FakePowercap() {
    std::string tmpl = (fs::temp_directory_path() / "frugal_rapl_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    root_ = tmpl;
  }
  ~FakePowercap() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // Writes <root>/<domain>/<file> = text.
  void Write(const std::string& domain, const std::string& file, const std::string& text) {
    fs::create_directories(root_ / domain);
    std::ofstream out(root_ / domain / file, std::ios::trunc);
    out << text;
  }
  // A domain with its name, counter and wrap point.
  void Domain(const std::string& domain, const std::string& name, uint64_t energy_uj, uint64_t max_uj) {
    Write(domain, "name", name + "\n");
    Write(domain, "energy_uj", std::to_string(energy_uj) + "\n");
    Write(domain, "max_energy_range_uj", std::to_string(max_uj) + "\n");
  }
  void SetEnergy(const std::string& domain, uint64_t energy_uj) {
    Write(domain, "energy_uj", std::to_string(energy_uj) + "\n");
  }
  std::string root() const { return root_.string(); }
  fs::path path() const { return root_; }

 private:
  fs::path root_;
};

// Root reads any file whatever its mode (CAP_DAC_OVERRIDE), so on CI, which
// runs as root, a mode-000 energy_uj would be read and the permission-denied
// path would never run. While this guard lives, the calling thread's effective
// set lacks CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so the kernel checks the
// mode bits for root as for anyone; the capabilities stay in the permitted set
// and the destructor restores them. Unprivileged processes have neither, and
// the guard changes nothing for them. Dropping effective capabilities needs no
// privilege, so this works in containers too.
class WithoutDacOverride {
 public:
  WithoutDacOverride() {
    REQUIRE(::syscall(SYS_capget, &header_, saved_) == 0);
    __user_cap_data_struct lowered[2] = {saved_[0], saved_[1]};
    for (int cap : {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH}) lowered[cap / 32].effective &= ~(1u << (cap % 32));
    REQUIRE(::syscall(SYS_capset, &header_, lowered) == 0);
  }
  ~WithoutDacOverride() { ::syscall(SYS_capset, &header_, saved_); }
  WithoutDacOverride(const WithoutDacOverride&) = delete;
  WithoutDacOverride& operator=(const WithoutDacOverride&) = delete;

 private:
  __user_cap_header_struct header_{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct saved_[2] = {};
};

// The layout of a two-socket machine: two packages, their core/dram
// sub-domains both nested and as top-level links, a psys domain and the
// control-type directory, of which only the two packages count.
void TwoPackages(FakePowercap& pc) {
  pc.Domain("intel-rapl:0", "package-0", 1000000, 262143328850);
  pc.Domain("intel-rapl:0/intel-rapl:0:0", "core", 400000, 262143328850);
  pc.Domain("intel-rapl:0:0", "core", 400000, 262143328850);
  pc.Domain("intel-rapl:1", "package-1", 5000000, 10000000);
  pc.Domain("intel-rapl:1:0", "dram", 7000, 10000000);
  pc.Domain("intel-rapl:2", "psys", 90000000, 262143328850);
  fs::create_directories(pc.path() / "intel-rapl");
  pc.Write("intel-rapl", "enabled", "1\n");
}

TEST_SUITE("energy") {
  TEST_CASE("RAPL sums the package domains, ignores sub-domains and psys, and handles wrap-around") {
    FakePowercap pc;
    TwoPackages(pc);
    auto meter = OpenRapl(pc.root());
    REQUIRE_MESSAGE(meter.ok(), meter.status().ToString());
    REQUIRE((*meter)->domains().size() == 2);
    CHECK((*meter)->domains()[0].name == "package-0");
    CHECK((*meter)->domains()[1].name == "package-1");

    auto j0 = (*meter)->ReadJoules();
    REQUIRE(j0.ok());
    CHECK(*j0 == 0.0);

    // package-0 +2 J, package-1 +4 J; the sub-domains and psys move too but must not count.
    pc.SetEnergy("intel-rapl:0", 3000000);
    pc.SetEnergy("intel-rapl:1", 9000000);
    pc.SetEnergy("intel-rapl:0:0", 99000000);
    pc.SetEnergy("intel-rapl:1:0", 9900000);
    pc.SetEnergy("intel-rapl:2", 190000000);
    auto j1 = (*meter)->ReadJoules();
    REQUIRE(j1.ok());
    CHECK(*j1 == doctest::Approx(6.0));

    // package-1 wraps at 10,000,000 uJ: 9,000,000 -> 1,000,000 is +2 J; package-0 +0.5 J.
    pc.SetEnergy("intel-rapl:0", 3500000);
    pc.SetEnergy("intel-rapl:1", 1000000);
    auto j2 = (*meter)->ReadJoules();
    REQUIRE(j2.ok());
    CHECK(*j2 == doctest::Approx(8.5));
  }

  TEST_CASE("an energy window measures the joules between its start and stop") {
    FakePowercap pc;
    TwoPackages(pc);
    auto meter = OpenRapl(pc.root());
    REQUIRE(meter.ok());
    EnergyWindow window(meter->get());
    CHECK(window.Stop().error().code() == ErrorCode::kFailedPrecondition);
    REQUIRE(window.Start().ok());
    pc.SetEnergy("intel-rapl:0", 1750000);  // +0.75 J
    pc.SetEnergy("intel-rapl:1", 5250000);  // +0.25 J
    auto j = window.Stop();
    REQUIRE(j.ok());
    CHECK(*j == doctest::Approx(1.0));
  }

  TEST_CASE("a failed RAPL read is an error and leaves the meter usable") {
    FakePowercap pc;
    TwoPackages(pc);
    auto meter = OpenRapl(pc.root());
    REQUIRE(meter.ok());
    pc.Write("intel-rapl:1", "energy_uj", "garbage\n");
    pc.SetEnergy("intel-rapl:0", 2000000);
    auto bad = (*meter)->ReadJoules();
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code() == ErrorCode::kDataLoss);
    pc.SetEnergy("intel-rapl:1", 5000000);
    auto good = (*meter)->ReadJoules();
    REQUIRE(good.ok());
    CHECK(*good == doctest::Approx(1.0));  // package-0's +1 J, counted once

    pc.SetEnergy("intel-rapl:1", 20000000);  // above max_energy_range_uj
    CHECK((*meter)->ReadJoules().error().code() == ErrorCode::kDataLoss);
  }

  TEST_CASE("OpenRapl fails clearly where RAPL is absent or unreadable") {
    auto missing = OpenRapl("/nonexistent/powercap");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code() == ErrorCode::kNotFound);
    CHECK(missing.error().message().find("/nonexistent/powercap") != std::string::npos);

    FakePowercap only_subdomains;
    only_subdomains.Domain("intel-rapl:0:0", "core", 1, 10);
    only_subdomains.Domain("intel-rapl:2", "psys", 1, 10);
    auto none = OpenRapl(only_subdomains.root());
    REQUIRE_FALSE(none.ok());
    CHECK(none.error().code() == ErrorCode::kNotFound);

    FakePowercap no_counter;
    no_counter.Write("intel-rapl:0", "max_energy_range_uj", "100\n");
    auto absent = OpenRapl(no_counter.root());
    REQUIRE_FALSE(absent.ok());
    CHECK(absent.error().code() == ErrorCode::kNotFound);
    CHECK(absent.error().message().find("energy_uj") != std::string::npos);

    FakePowercap not_a_file;
    not_a_file.Write("intel-rapl:0", "max_energy_range_uj", "100\n");
    fs::create_directories(not_a_file.path() / "intel-rapl:0" / "energy_uj");
    auto unreadable = OpenRapl(not_a_file.root());
    REQUIRE_FALSE(unreadable.ok());
    CHECK(unreadable.error().code() == ErrorCode::kUnavailable);

    FakePowercap garbage;
    garbage.Domain("intel-rapl:0", "package-0", 1, 100);
    garbage.Write("intel-rapl:0", "energy_uj", "-5\n");
    CHECK(OpenRapl(garbage.root()).error().code() == ErrorCode::kDataLoss);

  }

  TEST_CASE("an energy_uj the process may not read is kUnavailable, at open and at a later read, as root too") {
    // The usual case on a desktop: the powercap tree is there, energy_uj is 0400 root.
    FakePowercap pc;
    TwoPackages(pc);
    const fs::path counter = pc.path() / "intel-rapl:1" / "energy_uj";
    REQUIRE(::chmod(counter.c_str(), 0) == 0);
    WithoutDacOverride unprivileged;
    // The guard must really take root's override away, or this test proves nothing.
    REQUIRE_MESSAGE(!std::ifstream(counter), "a mode-000 file is still readable: the permission path is not exercised");

    auto denied = OpenRapl(pc.root());
    REQUIRE_FALSE(denied.ok());
    CHECK(denied.error().code() == ErrorCode::kUnavailable);
    CHECK(denied.error().message().find(counter.string()) != std::string::npos);
    CHECK(denied.error().message().find("Permission denied") != std::string::npos);

    // Readable at open, then locked (a permission change under a running
    // client): that read fails, and the meter counts on once it is readable again.
    REQUIRE(::chmod(counter.c_str(), 0444) == 0);
    auto meter = OpenRapl(pc.root());
    REQUIRE_MESSAGE(meter.ok(), meter.status().ToString());
    pc.SetEnergy("intel-rapl:0", 1500000);  // +0.5 J
    REQUIRE(::chmod(counter.c_str(), 0) == 0);
    auto locked = (*meter)->ReadJoules();
    REQUIRE_FALSE(locked.ok());
    CHECK(locked.error().code() == ErrorCode::kUnavailable);
    REQUIRE(::chmod(counter.c_str(), 0444) == 0);
    auto again = (*meter)->ReadJoules();
    REQUIRE(again.ok());
    CHECK(*again == doctest::Approx(0.5));
  }
}

}  // namespace
}  // namespace frugal
