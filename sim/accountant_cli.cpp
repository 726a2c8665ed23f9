#include "accountant_cli.h"

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "frugal/privacy/accountant.h"

namespace frugal::sim {
namespace {

// Shortest text that reads back as the same double (valid JSON for finite values).
std::string Json(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "frugal-sim accountant: %s\n", message.c_str());
  return 2;
}

}  // namespace

int RunAccountantCommand(int argc, char** argv) {
  CLI::App app{
      "frugal-sim accountant: (epsilon, delta) of the subsampled Gaussian mechanism by Renyi DP over "
      "Opacus's default orders, under Poisson sampling (add/remove adjacency) or fixed-size sampling "
      "without replacement (Wang, Balle & Kasiviswanathan 2019, replace-one adjacency; docs/privacy.md)",
      "frugal-sim accountant"};
  std::optional<double> noise, rate, delta, target;
  std::optional<int64_t> steps;
  std::string sampling = "poisson";
  app.add_option("--noise-multiplier", noise, "noise std over the clipping norm, z > 0");
  app.add_option("--sampling-rate", rate,
                 "probability q in (0, 1] that a client takes part in a round");
  app.add_option("--sampling", sampling,
                 "poisson (each client with probability q) or fixed (exactly q N of N without replacement)");
  app.add_option("--steps", steps, "number of rounds T >= 1");
  app.add_option("--delta", delta, "delta in (0, 1)");
  app.add_option("--target-epsilon", target,
                 "instead of --noise-multiplier: print the smallest noise multiplier whose epsilon "
                 "is at most this");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return Fail(e.what());
  }
  if (noise.has_value() == target.has_value())
    return Fail("give exactly one of --noise-multiplier and --target-epsilon");
  if (sampling != "poisson" && sampling != "fixed") {
    return Fail("--sampling must be poisson or fixed, got '" + sampling + "'");
  }
  const privacy::SamplingScheme scheme =
      sampling == "poisson" ? privacy::SamplingScheme::kPoisson : privacy::SamplingScheme::kFixedSize;
  if (!rate) return Fail("--sampling-rate is required");
  if (!steps) return Fail("--steps is required");
  if (!delta) return Fail("--delta is required");
  if (noise && !(*noise > 0 && std::isfinite(*noise))) {
    return Fail("--noise-multiplier must be a finite number > 0, got " + Json(*noise));
  }
  if (target && !(*target > 0 && std::isfinite(*target))) {
    return Fail("--target-epsilon must be a finite number > 0, got " + Json(*target));
  }
  if (!(*rate > 0 && *rate <= 1))
    return Fail("--sampling-rate must be in (0, 1], got " + Json(*rate));
  if (*steps < 1) return Fail("--steps must be >= 1, got " + std::to_string(*steps));
  if (!(*delta > 0 && *delta < 1)) return Fail("--delta must be in (0, 1), got " + Json(*delta));

  const auto t = static_cast<uint64_t>(*steps);
  double z = noise.value_or(0);
  if (target) {
    auto planned = privacy::NoiseMultiplierForEpsilon(scheme, *target, *rate, t, *delta);
    if (!planned.ok()) {
      std::fprintf(stderr, "frugal-sim accountant: %s\n", planned.error().ToString().c_str());
      return 1;
    }
    z = *planned;
  }
  auto spent = privacy::SubsampledGaussianEpsilon(scheme, *rate, z, t, *delta);
  if (!spent.ok()) return Fail(spent.error().ToString());
  if (!std::isfinite(spent->epsilon)) {
    std::fprintf(stderr, "frugal-sim accountant: epsilon is unbounded at these values\n");
    return 1;
  }
  std::string out =
      "{\"accountant\": \"rdp\", \"sampling\": \"" + std::string(privacy::SamplingSchemeName(scheme)) +
      "\", \"adjacency\": \"" + std::string(privacy::SamplingAdjacencyName(scheme)) +
      "\", \"noise_multiplier\": " + Json(z) +
      ", \"sampling_rate\": " + Json(*rate) + ", \"steps\": " + std::to_string(t) +
      ", \"delta\": " + Json(*delta);
  if (target) out += ", \"target_epsilon\": " + Json(*target);
  out += ", \"epsilon\": " + Json(spent->epsilon) + ", \"order\": " + Json(spent->order) + "}";
  std::printf("%s\n", out.c_str());
  return 0;
}

}  // namespace frugal::sim
