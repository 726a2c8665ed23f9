// frugal-coordinator: `ca init`, `ca issue` and `run`. Parses arguments and
// calls the library; everything else lives in coordinator/*.cpp.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "frugal/coordinator/ca.h"
#include "frugal/coordinator/config.h"
#include "frugal/coordinator/server.h"

int main(int argc, char** argv) {
  CLI::App app{"Frugal coordinator: federated rounds over mutual TLS, state in SQLite"};
  app.require_subcommand(1);

  auto* ca = app.add_subcommand("ca", "certificate authority for the coordinator and its clients");
  ca->require_subcommand(1);
  std::string ca_dir, client_name;
  auto* ca_init = ca->add_subcommand("init", "create the CA and the server certificate (localhost, 127.0.0.1)");
  ca_init->add_option("--dir", ca_dir, "directory for ca.{key,crt} and server.{key,crt}")->required();
  auto* ca_issue = ca->add_subcommand("issue", "issue a device key and certificate (CN = client name)");
  ca_issue->add_option("--dir", ca_dir, "the CA directory")->required();
  std::string prefix;
  size_t count = 0;
  auto* one = ca_issue->add_option("--client", client_name, "client identity");
  auto* many = ca_issue->add_option("--count", count, "issue N clients named <prefix>0 .. <prefix>N-1");
  ca_issue->add_option("--prefix", prefix, "name prefix for --count (e.g. device-)")->needs(many);
  one->excludes(many);
  auto* ca_identity = ca->add_subcommand("identity", "write a client's identity credential (.idc) for its existing key");
  ca_identity->add_option("--dir", ca_dir, "the CA directory")->required();
  ca_identity->add_option("--client", client_name, "client identity")->required();

  auto* run = app.add_subcommand("run", "serve the configured rounds, resuming the run from the store");
  std::string config_path;
  std::vector<std::string> overrides;
  bool verbose = false, quiet = false;
  run->add_option("-c,--config", config_path, "TOML configuration (docs/examples/coordinator.toml)");
  run->add_option("--set", overrides, "override a key: --set round.deadline_s=30 (repeatable)");
  run->add_flag("-v,--verbose", verbose, "debug logging");
  run->add_flag("-q,--quiet", quiet, "warnings and errors only");

  CLI11_PARSE(app, argc, argv);

  frugal::Status st;
  if (ca_init->parsed()) {
    st = frugal::coordinator::InitCa(ca_dir);
    if (st.ok()) std::printf("CA and server certificate written to %s\n", ca_dir.c_str());
  } else if (ca_identity->parsed()) {
    st = frugal::coordinator::IssueIdentityCredential(ca_dir, client_name);
    if (st.ok()) std::printf("%s\n", frugal::coordinator::CaPaths::ClientIdentity(ca_dir, client_name).c_str());
  } else if (ca_issue->parsed() && count > 0) {
    st = frugal::coordinator::IssueClientCerts(ca_dir, prefix, count);
    if (st.ok()) std::printf("%zu clients written to %s/clients\n", count, ca_dir.c_str());
  } else if (ca_issue->parsed()) {
    if (client_name.empty()) {
      std::fprintf(stderr, "frugal-coordinator: ca issue needs --client NAME or --count N [--prefix P]\n");
      return 1;
    }
    st = frugal::coordinator::IssueClientCert(ca_dir, client_name);
    if (st.ok()) {
      std::printf("%s\n%s\n", frugal::coordinator::CaPaths::ClientCert(ca_dir, client_name).c_str(),
                  frugal::coordinator::CaPaths::ClientKey(ca_dir, client_name).c_str());
    }
  } else {
    spdlog::set_level(verbose ? spdlog::level::debug : quiet ? spdlog::level::warn : spdlog::level::info);
    auto config = frugal::coordinator::LoadCoordinatorConfig(config_path, overrides);
    st = config.ok() ? frugal::coordinator::RunCoordinator(*config) : frugal::Status(config.error());
  }
  if (!st.ok()) {
    std::fprintf(stderr, "frugal-coordinator: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
