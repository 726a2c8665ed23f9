#include "frugal/client/device_policy.h"

#include <charconv>
#include <filesystem>
#include <fstream>

namespace frugal::client {
namespace {

std::optional<std::string> ReadLine(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

std::optional<double> ReadNumber(const std::filesystem::path& p) {
  auto s = ReadLine(p);
  if (!s) return std::nullopt;
  double v = 0;
  const auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || ptr != s->data() + s->size()) return std::nullopt;
  return v;
}

}  // namespace

PowerState ReadPowerState(const std::string& root) {
  PowerState st;
  std::error_code ec;
  std::filesystem::directory_iterator it(root, ec);
  if (ec) {
    st.charging = true;  // no power_supply tree: mains-powered
    return st;
  }
  for (const auto& entry : it) {
    const auto type = ReadLine(entry.path() / "type");
    if (!type) continue;
    if (*type == "Battery") {
      st.has_battery = true;
      if (auto cap = ReadNumber(entry.path() / "capacity"); cap && *cap >= 0 && *cap <= 100) {
        st.battery_percent = st.battery_percent ? std::min(*st.battery_percent, *cap) : *cap;
      }
      if (auto status = ReadLine(entry.path() / "status"); status && (*status == "Charging" || *status == "Full")) {
        st.charging = true;
      }
    } else if (*type == "Mains" || *type == "USB") {
      if (auto online = ReadNumber(entry.path() / "online"); online && *online == 1) st.charging = true;
    }
  }
  if (!st.has_battery) st.charging = true;  // mains-powered
  return st;
}

PolicyDecision DecideTask(const PolicyConfig& policy, const PowerState& power, const std::string& radio) {
  if (policy.require_charging && !power.charging) return {false, "device is not charging"};
  if (power.battery_percent && !power.charging && *power.battery_percent < policy.min_battery_percent) {
    return {false, "battery at " + std::to_string(static_cast<int>(*power.battery_percent)) + "% is below " +
                       std::to_string(static_cast<int>(policy.min_battery_percent)) + "%"};
  }
  bool metered = policy.network == "metered";
  if (policy.network == "auto") metered = radio != "wifi" && radio != "ethernet";
  if (metered && !policy.allow_metered) return {false, "network is metered (" + radio + ")"};
  return {true, ""};
}

}  // namespace frugal::client
