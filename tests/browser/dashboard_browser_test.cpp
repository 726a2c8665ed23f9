// The dashboard in a real browser: two short frugal-sim runs (dense and
// Frugal) and `frugal-sim compare` of them, then a frugal-coordinator with
// three frugal-client processes on loopback mutual TLS, and headless Chromium
// (Debian's chromium, driven by tests/browser/dashboard_check.mjs through
// playwright-core) watching its status port: no console errors, no request
// leaving the coordinator, charts gaining points, one row per client, a
// client killed with SIGKILL shown as gone, the comparison showing both runs.
// FRUGAL_SCREENSHOTS=DIR also writes the PNGs of docs/img/.
#include <doctest/doctest.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "coordinator/child_process.h"
#include "data/temp_dir.h"
#include "frugal/coordinator/ca.h"
#include "frugal/test_source_dir.h"

namespace frugal::coordinator {
namespace {

using testing::Process;
using testing::ReadFile;
using testing::SleepMs;

uint16_t WaitPort(const std::string& path, Process& owner, const std::string& log) {
  for (int i = 0; i < 1200; ++i) {
    std::ifstream in(path);
    uint32_t port = 0;
    if (in >> port && port > 0) return static_cast<uint16_t>(port);
    REQUIRE_MESSAGE(!owner.Wait(0).has_value(), ReadFile(log));
    SleepMs(50);
  }
  FAIL("no port file " << path);
  return 0;
}

// Runs a command to its end; its exit code (128 + signal if killed).
int RunToEnd(std::vector<std::string> argv, const std::string& log, double seconds) {
  Process p(std::move(argv), log);
  const std::optional<int> code = p.Wait(seconds);
  REQUIRE_MESSAGE(code.has_value(), "still running after " << seconds << " s: " << ReadFile(log));
  return *code;
}

TEST_CASE("the dashboard in headless Chromium follows a live run, and the comparison page shows both runs") {
  testing::TempDir dir;
  const std::string source = FRUGAL_SOURCE_DIR;

  // Two finished runs and their comparison, at a target both reach.
  for (const char* pipeline : {"dense", "frugal"}) {
    const std::string log = dir.Path(std::string("sim-") + pipeline + ".log");
    const int code = RunToEnd({FRUGAL_SIM_BIN, "-c", source + "/sim/scenarios/fmnist-logreg-c10.toml", "--set",
                               std::string("pipeline=\"") + pipeline + "\"", "--set", "rounds=6", "--set",
                               "population.clients=20", "--set", "round.clients_per_round=5", "-q", "--no-progress",
                               "-o", dir.Path(pipeline)},
                              log, 600);
    REQUIRE_MESSAGE(code == 0, ReadFile(log));
  }
  const std::string compare = dir.Path("compare.html");
  REQUIRE(RunToEnd({FRUGAL_SIM_BIN, "compare", dir.Path("dense"), dir.Path("frugal"), "--target", "0.7", "--out",
                    compare},
                   dir.Path("compare.log"), 60) == 0);

  // The service: three clients, rounds spaced so the page sees them commit.
  const std::string ca = dir.Path("ca");
  const std::vector<std::string> names = {"phone-a", "phone-b", "phone-c"};
  REQUIRE(InitCa(ca).ok());
  for (const auto& n : names) REQUIRE(IssueClientCert(ca, n).ok());
  const CaPaths p = CaPaths::In(ca);
  const auto quoted = [](const std::string& s) { return "\"" + s + "\""; };
  const std::string coord_log = dir.Path("coordinator.log");
  Process coordinator({FRUGAL_COORDINATOR_BIN, "run", "--set", "service.port=0", "--set",
                       "service.port_file=" + quoted(dir.Path("port")), "--set", "service.status_port=0", "--set",
                       "service.status_port_file=" + quoted(dir.Path("status_port")), "--set",
                       "service.ca_cert=" + quoted(p.ca_cert), "--set", "service.server_cert=" + quoted(p.server_cert),
                       "--set", "service.server_key=" + quoted(p.server_key), "--set",
                       "service.store=" + quoted(dir.Path("coordinator.db")), "--set",
                       "service.out_dir=" + quoted(dir.Path("run")), "--set", "model=\"logreg\"", "--set",
                       "rounds=40", "--set", "round.clients_per_round=3", "--set", "round.min_clients=3", "--set",
                       "round.interval_s=1", "--set", "eval.examples=1000"},
                      coord_log);
  WaitPort(dir.Path("port"), coordinator, coord_log);
  const uint16_t status_port = WaitPort(dir.Path("status_port"), coordinator, coord_log);
  std::vector<std::unique_ptr<Process>> clients;
  const std::vector<std::string> devices = {"phone-low", "phone-mid", "laptop"};
  const std::vector<std::string> radios = {"wifi", "lte", "5g"};
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    clients.push_back(std::make_unique<Process>(
        std::vector<std::string>{FRUGAL_CLIENT_BIN, "-i", "--set", "name=" + quoted(n), "--set",
                                 "coordinator.port_file=" + quoted(dir.Path("port")), "--set",
                                 "tls.ca_cert=" + quoted(p.ca_cert), "--set",
                                 "tls.cert=" + quoted(CaPaths::ClientCert(ca, n)), "--set",
                                 "tls.key=" + quoted(CaPaths::ClientKey(ca, n)), "--set",
                                 "state_dir=" + quoted(dir.Path("state-" + n)), "--set",
                                 "device.class=" + quoted(devices[i]), "--set", "device.radio=" + quoted(radios[i]),
                                 "--set", "data.clients=3", "--set", "data.index=" + std::to_string(i), "--set",
                                 "connection.backoff_initial_s=0.2"},
        dir.Path(n + ".log")));
  }

  // The browser check kills phone-b itself (SIGKILL, by pid) once the table is full.
  const char* shots = std::getenv("FRUGAL_SCREENSHOTS");
  std::vector<std::string> node = {FRUGAL_NODE_BIN,
                                   source + "/tests/browser/dashboard_check.mjs",
                                   "--url", "http://127.0.0.1:" + std::to_string(status_port) + "/",
                                   "--clients", std::to_string(names.size()),
                                   "--kill-pid", std::to_string(clients[1]->pid()),
                                   "--kill-name", names[1],
                                   "--compare", compare,
                                   "--labels", "dense,frugal",
                                   "--timeout-s", "90"};
  if (shots != nullptr && *shots != '\0') {
    node.push_back("--screenshots");
    node.push_back(shots);
  }
  const std::string node_log = dir.Path("browser.log");
  const int code = RunToEnd(node, node_log, 240);
  INFO("browser check log:\n" << ReadFile(node_log));
  INFO("coordinator log (tail):\n" << ReadFile(coord_log).substr(ReadFile(coord_log).size() > 4000 ? ReadFile(coord_log).size() - 4000 : 0));
  CHECK(code == 0);
  // The killed client really is dead: the browser's "gone" is about a real process.
  CHECK(clients[1]->Wait(5).has_value());
  coordinator.Terminate();
  coordinator.Wait(30);
}

}  // namespace
}  // namespace frugal::coordinator
