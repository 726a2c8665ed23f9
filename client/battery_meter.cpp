#include "frugal/client/battery_meter.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

namespace frugal::client {
namespace {

namespace fs = std::filesystem;

// A sysfs attribute's first line, or nullopt when absent or unreadable (drivers
// answer ENODATA for values they do not have at the moment).
std::optional<std::string> ReadAttribute(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

Result<std::optional<int64_t>> ReadInteger(const fs::path& p) {
  const std::optional<std::string> text = ReadAttribute(p);
  if (!text) return std::optional<int64_t>();
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (text->empty() || ec != std::errc() || end != text->data() + text->size()) {
    return DataLossError("battery gauge file '" + p.string() + "' does not hold an integer: '" +
                         text->substr(0, 64) + "'");
  }
  return std::optional<int64_t>(v);
}

}  // namespace

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Result<GaugeReading> ReadGauge(const std::string& battery_dir, double t_s) {
  const fs::path dir(battery_dir);
  GaugeReading r;
  r.t_s = t_s;
  FRUGAL_ASSIGN_OR_RETURN(r.energy_now_uwh, ReadInteger(dir / "energy_now"));
  FRUGAL_ASSIGN_OR_RETURN(r.charge_now_uah, ReadInteger(dir / "charge_now"));
  FRUGAL_ASSIGN_OR_RETURN(r.voltage_now_uv, ReadInteger(dir / "voltage_now"));
  FRUGAL_ASSIGN_OR_RETURN(r.current_now_ua, ReadInteger(dir / "current_now"));
  if (!r.energy_now_uwh && !r.charge_now_uah && !r.voltage_now_uv && !r.current_now_ua) {
    return NotFoundError("no battery gauge file (energy_now, charge_now, voltage_now, current_now) in '" +
                         battery_dir + "'");
  }
  r.status = ReadAttribute(dir / "status").value_or("");
  return r;
}

Result<std::string> FindBattery(const std::string& root) {
  std::error_code ec;
  fs::directory_iterator it(root, ec);
  if (ec) return NotFoundError("no power_supply directory at '" + root + "'");
  std::vector<fs::path> dirs;
  for (const fs::directory_entry& e : it) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  std::string why;
  for (const fs::path& d : dirs) {
    if (ReadAttribute(d / "type") != "Battery") continue;
    auto reading = ReadGauge(d.string(), 0);
    // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on "literal" + std::string&&.
    const Status usable = reading.ok() ? ChooseGaugeKind(*reading).status() : Status(reading.error());
    if (!usable.ok()) {
      why.append(why.empty() ? ": " : "; ").append(d.filename().string()).append(": ").append(usable.error().message());
      continue;
    }
    return d.string();
  }
  std::string message = "no battery with a fuel gauge under '";
  message.append(root).append("'").append(why);
  return NotFoundError(std::move(message));
}

Result<std::unique_ptr<BatteryMeter>> BatteryMeter::Open(const std::string& battery_dir, double rate_hz,
                                                         Clock clock) {
  if (!(rate_hz > 0 && rate_hz <= 1000)) {
    return InvalidArgumentError("battery sampling rate must be in (0, 1000] Hz, not " + std::to_string(rate_hz));
  }
  FRUGAL_ASSIGN_OR_RETURN(GaugeReading first, ReadGauge(battery_dir, clock()));
  FRUGAL_ASSIGN_OR_RETURN(GaugeKind kind, ChooseGaugeKind(first));
  return std::unique_ptr<BatteryMeter>(new BatteryMeter(battery_dir, kind, rate_hz, std::move(clock)));
}

BatteryMeter::BatteryMeter(std::string dir, GaugeKind kind, double rate_hz, Clock clock)
    : dir_(std::move(dir)), kind_(kind), rate_hz_(rate_hz), clock_(std::move(clock)), trace_(kind) {}

BatteryMeter::~BatteryMeter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BatteryMeter::StartSampling() {
  std::lock_guard lock(mu_);
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

Status BatteryMeter::SampleOnce() {
  auto reading = ReadGauge(dir_, clock_());
  std::lock_guard lock(mu_);
  Status st = reading.ok() ? trace_.Add(*reading) : Status(reading.error());
  if (!st.ok()) ++failed_reads_;
  return st;
}

void BatteryMeter::Loop() {
  const auto period = std::chrono::duration<double>(1.0 / rate_hz_);
  std::string last_error;
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || held_; });
    if (stop_) return;
    lock.unlock();
    if (Status st = SampleOnce(); !st.ok() && st.error().message() != last_error) {
      last_error = st.error().message();
      spdlog::warn("battery gauge: {} (reading skipped)", last_error);
    }
    lock.lock();
    cv_.wait_for(lock, period, [this] { return stop_; });
  }
}

void BatteryMeter::Hold(bool active) {
  {
    std::lock_guard lock(mu_);
    if (held_ == active) return;
    held_ = active;
    if (!active) trace_.Break();  // the next reading starts after a pause
  }
  if (active && !thread_.joinable()) {
    (void)SampleOnce();  // no sampler thread (tests): one reading to mark the start
  }
  cv_.notify_all();
}

PhaseEnergy BatteryMeter::Measure(std::string_view phase, double t0_s, double t1_s) {
  std::lock_guard lock(mu_);
  return trace_.Measure(phase, t0_s, t1_s);
}

std::string BatteryMeter::Describe() const {
  return "battery " + fs::path(dir_).filename().string() + " (" + std::string(GaugeKindName(kind_)) + ")";
}

size_t BatteryMeter::readings() const {
  std::lock_guard lock(mu_);
  return trace_.size();
}

size_t BatteryMeter::failed_reads() const {
  std::lock_guard lock(mu_);
  return failed_reads_;
}

}  // namespace frugal::client
