#include "frugal/energy/meter.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

namespace frugal {
namespace {

namespace fs = std::filesystem;

// True for "intel-rapl:N" (a package domain), false for "intel-rapl:N:M"
// (a sub-domain inside a package) and anything else.
bool IsPackageDomainName(std::string_view name) {
  constexpr std::string_view kPrefix = "intel-rapl:";
  if (name.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view rest = name.substr(kPrefix.size());
  if (rest.empty()) return false;
  return std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Reads a small sysfs file whole. kNotFound if absent, kUnavailable if unreadable.
Result<std::string> ReadSmallFile(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return NotFoundError("RAPL file '" + path.string() + "' does not exist");
  if (!fs::is_regular_file(path, ec)) {
    return UnavailableError("RAPL path '" + path.string() + "' is not a readable file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return UnavailableError("RAPL file '" + path.string() + "' is not readable (" + std::strerror(errno) +
                            "; energy_uj is usually root-only)");
  }
  std::string text(64, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return UnavailableError("error reading RAPL file '" + path.string() + "'");
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

Result<uint64_t> ReadCounter(const fs::path& path) {
  FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) text.pop_back();
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return DataLossError("RAPL file '" + path.string() + "' does not hold an unsigned integer: '" + text + "'");
  }
  return v;
}

}  // namespace

EnergyMeter::~EnergyMeter() = default;

Status EnergyWindow::Start() {
  start_j_.reset();
  FRUGAL_ASSIGN_OR_RETURN(double j, meter_->ReadJoules());
  start_j_ = j;
  return OkStatus();
}

Result<double> EnergyWindow::Stop() {
  if (!start_j_.has_value()) return FailedPreconditionError("energy window stopped without a successful Start()");
  FRUGAL_ASSIGN_OR_RETURN(double j, meter_->ReadJoules());
  double window = j - *start_j_;
  start_j_.reset();
  return window;
}

Result<double> RaplMeter::ReadJoules() {
  // Read every domain first, so a failed read leaves the meter's state untouched.
  std::vector<uint64_t> now(domains_.size());
  for (size_t i = 0; i < domains_.size(); ++i) {
    FRUGAL_ASSIGN_OR_RETURN(now[i], ReadCounter(fs::path(domains_[i].dir) / "energy_uj"));
    if (now[i] > domains_[i].max_range_uj) {
      return DataLossError("RAPL counter " + domains_[i].dir + "/energy_uj (" + std::to_string(now[i]) +
                           ") exceeds max_energy_range_uj (" + std::to_string(domains_[i].max_range_uj) + ")");
    }
  }
  for (size_t i = 0; i < domains_.size(); ++i) {
    Domain& d = domains_[i];
    // The counter runs 0..max_range_uj and then starts again at 0.
    uint64_t delta = now[i] >= d.last_uj ? now[i] - d.last_uj : (d.max_range_uj - d.last_uj) + now[i];
    total_uj_ += static_cast<double>(delta);
    d.last_uj = now[i];
  }
  return total_uj_ * 1e-6;
}

Result<std::unique_ptr<RaplMeter>> OpenRapl(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return NotFoundError("no powercap directory at '" + root + "' (RAPL absent)");
  std::vector<fs::path> dirs;
  fs::directory_iterator it(root, ec);
  if (ec) return UnavailableError("cannot list powercap directory '" + root + "': " + ec.message());
  for (const fs::directory_entry& e : it) {
    if (IsPackageDomainName(e.path().filename().string())) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  std::vector<RaplMeter::Domain> domains;
  for (const fs::path& dir : dirs) {
    RaplMeter::Domain d;
    d.dir = dir.string();
    if (auto name = ReadSmallFile(dir / "name"); name.ok()) {
      d.name = *name;
      while (!d.name.empty() && (d.name.back() == '\n' || d.name.back() == '\r')) d.name.pop_back();
    }
    // The platform ("psys") domain already contains the packages.
    if (d.name == "psys") continue;
    FRUGAL_ASSIGN_OR_RETURN(d.max_range_uj, ReadCounter(dir / "max_energy_range_uj"));
    FRUGAL_ASSIGN_OR_RETURN(d.last_uj, ReadCounter(dir / "energy_uj"));
    if (d.max_range_uj == 0) return DataLossError("RAPL " + d.dir + "/max_energy_range_uj is 0");
    domains.push_back(std::move(d));
  }
  if (domains.empty()) {
    return NotFoundError("no RAPL package domain (intel-rapl:N) under '" + root + "'");
  }
  return std::unique_ptr<RaplMeter>(new RaplMeter(std::move(domains)));
}

}  // namespace frugal
