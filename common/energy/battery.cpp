#include "frugal/energy/battery.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

namespace frugal {
namespace {

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// On a charger the battery's counters and current show the charge flowing in,
// not what the device draws, so nothing about the device can be read from them.
bool OnExternalPower(std::string_view status) {
  return status == "Charging" || status == "Full" || status == "Not charging";
}

Status CheckRange(const std::optional<int64_t>& v, std::string_view field, int64_t lo, int64_t hi,
                  std::string_view unit) {
  if (!v || (*v >= lo && *v <= hi)) return OkStatus();
  return DataLossError("battery gauge " + std::string(field) + " = " + std::to_string(*v) + " " + std::string(unit) +
                       " is outside the plausible range " + std::to_string(lo) + ".." + std::to_string(hi));
}

}  // namespace

std::string_view GaugeKindName(GaugeKind k) {
  switch (k) {
    case GaugeKind::kEnergy: return "energy_now";
    case GaugeKind::kChargeVoltage: return "charge_now*voltage_now";
    case GaugeKind::kCurrentVoltage: return "current_now*voltage_now";
  }
  return "unknown";
}

Status ValidateGaugeReading(const GaugeReading& r) {
  if (!std::isfinite(r.t_s)) return InvalidArgumentError("battery gauge reading has a non-finite time");
  FRUGAL_RETURN_IF_ERROR(CheckRange(r.energy_now_uwh, "energy_now", 0, kGaugeMaxEnergyUwh, "uWh"));
  FRUGAL_RETURN_IF_ERROR(CheckRange(r.charge_now_uah, "charge_now", 0, kGaugeMaxChargeUah, "uAh"));
  FRUGAL_RETURN_IF_ERROR(
      CheckRange(r.voltage_now_uv, "voltage_now", kGaugeMinVoltageUv, kGaugeMaxVoltageUv, "uV"));
  FRUGAL_RETURN_IF_ERROR(
      CheckRange(r.current_now_ua, "current_now", -kGaugeMaxCurrentUa, kGaugeMaxCurrentUa, "uA"));
  return OkStatus();
}

Result<GaugeKind> ChooseGaugeKind(const GaugeReading& r) {
  if (r.energy_now_uwh) return GaugeKind::kEnergy;
  if (r.charge_now_uah && r.voltage_now_uv) return GaugeKind::kChargeVoltage;
  if (r.current_now_ua && r.voltage_now_uv) return GaugeKind::kCurrentVoltage;
  return NotFoundError(
      "battery gauge exposes neither energy_now, nor charge_now with voltage_now, nor current_now with voltage_now");
}

GaugeTrace::GaugeTrace(GaugeKind kind, double min_rate_hz, size_t max_samples)
    : kind_(kind), min_rate_hz_(min_rate_hz), max_samples_(std::max<size_t>(max_samples, 2)) {}

Status GaugeTrace::Add(const GaugeReading& r) {
  FRUGAL_RETURN_IF_ERROR(ValidateGaugeReading(r));
  if (!samples_.empty() && r.t_s < samples_.back().t_s) {
    return InvalidArgumentError("battery gauge reading at " + Fixed(r.t_s, 3) + " s is older than the last one (" +
                                Fixed(samples_.back().t_s, 3) + " s)");
  }
  Sample s{r.t_s, 0, 0, OnExternalPower(r.status), break_pending_};
  switch (kind_) {
    case GaugeKind::kEnergy:
      if (!r.energy_now_uwh) return InvalidArgumentError("battery gauge reading lacks energy_now");
      s.value = *r.energy_now_uwh;
      break;
    case GaugeKind::kChargeVoltage:
      if (!r.charge_now_uah || !r.voltage_now_uv) {
        return InvalidArgumentError("battery gauge reading lacks charge_now or voltage_now");
      }
      s.value = *r.charge_now_uah;
      s.voltage_uv = *r.voltage_now_uv;
      break;
    case GaugeKind::kCurrentVoltage:
      if (!r.current_now_ua || !r.voltage_now_uv) {
        return InvalidArgumentError("battery gauge reading lacks current_now or voltage_now");
      }
      // Drivers disagree on the sign of a discharge current; the status says the direction.
      s.value = std::llabs(*r.current_now_ua);
      s.voltage_uv = *r.voltage_now_uv;
      break;
  }
  samples_.push_back(s);
  break_pending_ = false;
  while (samples_.size() > max_samples_) samples_.pop_front();
  return OkStatus();
}

bool GaugeTrace::IsUpdate(size_t i) const {
  return i > 0 && i < samples_.size() && !samples_[i].segment_start && samples_[i].value != samples_[i - 1].value;
}

std::optional<double> GaugeTrace::UpdateIntervalS() const {
  // Gaps between updates, within segments only (a pause hides when the gauge changed).
  std::vector<double> gaps;
  std::optional<double> prev;
  for (size_t i = 1; i < samples_.size(); ++i) {
    if (samples_[i].segment_start) prev.reset();
    if (!IsUpdate(i)) continue;
    if (prev) gaps.push_back(samples_[i].t_s - *prev);
    prev = samples_[i].t_s;
  }
  if (gaps.empty()) return std::nullopt;
  std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
  return gaps[gaps.size() / 2];
}

std::string GaugeTrace::TooShortNote(double seconds) const {
  const std::optional<double> interval = UpdateIntervalS();
  if (interval && seconds < *interval) {
    return "modelled: the " + Fixed(seconds, 1) + " s phase is shorter than the gauge's update interval (" +
           Fixed(*interval, 1) + " s)";
  }
  bool ever_changed = false;
  for (size_t i = 1; i < samples_.size() && !ever_changed; ++i) ever_changed = IsUpdate(i);
  if (!ever_changed) {
    const double span = samples_.empty() ? 0 : samples_.back().t_s - samples_.front().t_s;
    return "modelled: the gauge never updated (" + std::to_string(samples_.size()) + " readings over " +
           Fixed(span, 1) + " s)";
  }
  return "modelled: the gauge updated fewer than twice in the " + Fixed(seconds, 1) + " s phase" +
         (interval ? " (update interval " + Fixed(*interval, 1) + " s)" : std::string());
}

PhaseEnergy GaugeTrace::Measure(std::string_view phase, double t0_s, double t1_s) const {
  PhaseEnergy out;
  out.phase = std::string(phase);
  out.seconds = std::isfinite(t0_s) && std::isfinite(t1_s) && t1_s > t0_s ? t1_s - t0_s : 0;
  if (out.seconds <= 0) {
    out.note = "modelled: empty phase";
    return out;
  }
  // The window's readings, plus the one before it (whether the first reading
  // inside is an update, and the device's state when the phase began).
  const auto first = std::lower_bound(samples_.begin(), samples_.end(), t0_s,
                                      [](const Sample& s, double t) { return s.t_s < t; });
  const auto last = std::upper_bound(samples_.begin(), samples_.end(), t1_s,
                                     [](double t, const Sample& s) { return t < s.t_s; });
  const auto from = first == samples_.begin() ? first : first - 1;
  if (last - first < 1) {
    out.note = "modelled: no gauge reading inside the phase";
    return out;
  }
  for (auto it = from; it != last; ++it) {
    if (it->charging) {
      out.note = "modelled: the device was on external power, so the battery gauge does not see its draw";
      return out;
    }
  }
  return kind_ == GaugeKind::kCurrentVoltage ? MeasurePower(std::move(out), t0_s, t1_s)
                                              : MeasureCounter(std::move(out), t0_s, t1_s);
}

PhaseEnergy GaugeTrace::MeasureCounter(PhaseEnergy out, double t0_s, double t1_s) const {
  // Indices of the readings inside [t0, t1] at which the counter changed.
  std::vector<size_t> updates;
  bool first_inside = true;
  for (size_t i = 1; i < samples_.size(); ++i) {
    const Sample& s = samples_[i];
    if (s.t_s < t0_s || s.t_s > t1_s) continue;
    const bool first = std::exchange(first_inside, false);
    if (s.segment_start) {
      // Sampling that resumes as the phase starts is fine; a pause inside it
      // hides how far the counter moved.
      if (first) continue;
      out.note = "modelled: the gauge was not read for part of the phase";
      return out;
    }
    if (s.value > samples_[i - 1].value) {
      out.note = "modelled: the gauge's counter rose during the phase (charging or recalibration)";
      return out;
    }
    if (IsUpdate(i)) updates.push_back(i);
  }
  if (updates.size() < 2) {
    out.note = TooShortNote(out.seconds);
    return out;
  }
  const Sample& a = samples_[updates.front()];
  const Sample& b = samples_[updates.back()];
  const double span = b.t_s - a.t_s;
  double joules = 0;
  if (kind_ == GaugeKind::kEnergy) {
    joules = static_cast<double>(a.value - b.value) * 3.6e-3;  // µWh -> J
  } else {
    // ΔQ at the mean voltage: Q·V per reading would count voltage sag under load as energy.
    double v_sum = 0;
    for (size_t i = updates.front(); i <= updates.back(); ++i) v_sum += static_cast<double>(samples_[i].voltage_uv);
    const double v_mean = v_sum / static_cast<double>(updates.back() - updates.front() + 1);
    joules = static_cast<double>(a.value - b.value) * v_mean * 3.6e-9;  // µAh * µV -> J
  }
  const double watts = span > 0 ? joules / span : 0;
  if (!(span > 0) || !(watts <= kGaugeMaxPowerW)) {
    out.note = "modelled: implausible power " + Fixed(watts, 1) + " W from the gauge";
    return out;
  }
  out.source = EnergySource::kMeasured;
  out.joules = watts * out.seconds;
  out.note = "measured (" + std::string(GaugeKindName(kind_)) + "): " + Fixed(watts, 3) + " W mean over " +
             std::to_string(updates.size()) + " gauge updates in " + Fixed(span, 1) + " s, times the " +
             Fixed(out.seconds, 1) + " s phase";
  return out;
}

PhaseEnergy GaugeTrace::MeasurePower(PhaseEnergy out, double t0_s, double t1_s) const {
  std::vector<const Sample*> in;
  for (const Sample& s : samples_) {
    if (s.t_s >= t0_s && s.t_s <= t1_s) in.push_back(&s);
  }
  // At min_rate_hz, no two readings (or a reading and a phase edge) are more
  // than one period apart; twice that allows for a late wake-up.
  const double max_gap = 2.0 / min_rate_hz_;
  double gap = std::max(in.front()->t_s - t0_s, t1_s - in.back()->t_s);
  for (size_t i = 1; i < in.size(); ++i) gap = std::max(gap, in[i]->t_s - in[i - 1]->t_s);
  if (gap > max_gap) {
    out.note = "modelled: current_now was read " + Fixed(gap, 2) + " s apart; integrating it needs at least " +
               Fixed(min_rate_hz_, 1) + " readings a second";
    return out;
  }
  size_t changes = 0;
  for (size_t i = 1; i < in.size(); ++i) changes += !in[i]->segment_start && in[i]->value != in[i - 1]->value;
  if (changes < 2) {
    out.note = TooShortNote(out.seconds);
    return out;
  }
  auto watts = [](const Sample* s) { return static_cast<double>(s->value) * static_cast<double>(s->voltage_uv) * 1e-12; };
  // Trapezoids between readings; the phase's edges hold the nearest reading.
  double joules = watts(in.front()) * (in.front()->t_s - t0_s) + watts(in.back()) * (t1_s - in.back()->t_s);
  for (size_t i = 1; i < in.size(); ++i) {
    joules += 0.5 * (watts(in[i]) + watts(in[i - 1])) * (in[i]->t_s - in[i - 1]->t_s);
  }
  const double mean_w = joules / out.seconds;
  if (!(mean_w <= kGaugeMaxPowerW)) {
    out.note = "modelled: implausible power " + Fixed(mean_w, 1) + " W from the gauge";
    return out;
  }
  out.source = EnergySource::kMeasured;
  out.joules = joules;
  out.note = "measured (current_now*voltage_now): " + std::to_string(in.size()) + " readings integrated over " +
             Fixed(out.seconds, 1) + " s, " + Fixed(mean_w, 3) + " W mean";
  return out;
}

PhaseMeter::~PhaseMeter() = default;

}  // namespace frugal
