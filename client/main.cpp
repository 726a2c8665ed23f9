// frugal-client: the device agent. Parses arguments and calls the library.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "frugal/client/agent.h"
#include "frugal/client/config.h"

int main(int argc, char** argv) {
  CLI::App app{"Frugal client agent: trains on local data for a coordinator over mutual TLS"};
  app.footer(
      "Exit status:\n"
      "  0  the coordinator said the run is complete\n"
      "  1  PERMISSION_DENIED: the coordinator refused this identity (revoked)\n"
      "  2  bad configuration, data, energy profiles or TLS files\n"
      "  3  PROTOCOL_VERSION: the coordinator speaks another protocol version\n"
      "  4  UNAUTHENTICATED: the coordinator refused the certificate, or its name is not the client's\n"
      "  5  gave up after connection.max_attempts consecutive failed attempts\n"
      "Codes 1, 3 and 4 are not retried: fix the deployment before restarting.");
  std::string config_path;
  std::vector<std::string> overrides;
  bool verbose = false, info = false;
  app.add_option("-c,--config", config_path, "TOML configuration (docs/examples/client.toml)");
  app.add_option("--set", overrides, "override a key: --set data.index=3 (repeatable)");
  app.add_flag("-v,--verbose", verbose, "debug logging");
  app.add_flag("-i,--info", info, "informational logging (default: warnings only)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(verbose ? spdlog::level::debug : info ? spdlog::level::info : spdlog::level::warn);

  auto config = frugal::client::LoadClientConfig(config_path, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "frugal-client: %s\n", config.error().ToString().c_str());
    return frugal::client::kExitSetup;
  }
  auto agent = frugal::client::Agent::Create(*config);
  if (!agent.ok()) {
    std::fprintf(stderr, "frugal-client: %s\n", agent.error().ToString().c_str());
    return frugal::client::kExitSetup;
  }
  const frugal::Status st = (*agent)->Run();
  if (!st.ok()) std::fprintf(stderr, "frugal-client: %s\n", st.ToString().c_str());
  return frugal::client::ExitCodeFor(st);
}
