// End-to-end tests of frugal-coordinator and frugal-client as real processes
// on loopback over mutual TLS 1.3: accuracy with ten clients, refusals at the
// handshake and of malformed streams while the others are served, the
// connection cap's refusal, kill -9
// of the coordinator mid-round followed by a restart, and the secure pipeline
// with two clients killed mid-protocol, and [prune] with [widths] through
// three agents, and a round's close held off the I/O thread (served
// meanwhile, then kill -9). Ports are chosen by the
// coordinator binding port 0; no assertion is about time.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "coordinator/child_process.h"
#include "data/temp_dir.h"
#include "frugal/codec/uplink.h"
#include "frugal/coordinator/ca.h"
#include "frugal/coordinator/config.h"
#include "frugal/coordinator/store.h"
#include "frugal/core/random.h"
#include "frugal/model/prune.h"
#include "frugal/report/run_dir.h"
#include "frugal/privacy/accountant.h"
#include "frugal/privacy/dp.h"
#include "frugal/proto/frame.h"
#include "frugal/report/run_report.h"

namespace frugal::coordinator {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

using testing::Process;
using testing::ReadFile;
using testing::SleepMs;

uint16_t WaitPort(const std::string& path, Process& owner) {
  for (int i = 0; i < 1200; ++i) {
    std::ifstream in(path);
    uint32_t port = 0;
    if (in >> port && port > 0) return static_cast<uint16_t>(port);
    REQUIRE_FALSE(owner.Wait(0).has_value());
    SleepMs(50);
  }
  FAIL("no port file " << path);
  return 0;
}

// GET on the loopback status port; "" if it cannot connect.
std::string HttpGet(uint16_t port, const std::string& path) {
  asio::io_context io;
  tcp::socket s(io);
  boost::system::error_code ec;
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return "";
  const std::string req = "GET " + path + " HTTP/1.0\r\n\r\n";
  asio::write(s, asio::buffer(req), ec);
  std::string out;
  char buf[4096];
  for (;;) {
    const size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  const size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

std::optional<nlohmann::json> Status(uint16_t port) {
  const std::string body = HttpGet(port, "/status");
  if (body.empty()) return std::nullopt;
  return nlohmann::json::parse(body, nullptr, false);
}

// The fixture: a CA, client certificates and command lines.
struct Fleet {
  testing::TempDir dir;
  std::string ca_dir = dir.Path("ca");

  explicit Fleet(const std::vector<std::string>& clients) {
    REQUIRE(InitCa(ca_dir).ok());
    for (const auto& c : clients) REQUIRE(IssueClientCert(ca_dir, c).ok());
  }

  std::vector<std::string> CoordinatorArgs(const std::vector<std::string>& sets) const {
    const CaPaths p = CaPaths::In(ca_dir);
    std::vector<std::string> a = {FRUGAL_COORDINATOR_BIN,
                                  "run",
                                  "--set", "service.port=0",
                                  "--set", "service.port_file=\"" + dir.Path("port") + "\"",
                                  "--set", "service.status_port=0",
                                  "--set", "service.status_port_file=\"" + dir.Path("status_port") + "\"",
                                  "--set", "service.ca_cert=\"" + p.ca_cert + "\"",
                                  "--set", "service.server_cert=\"" + p.server_cert + "\"",
                                  "--set", "service.server_key=\"" + p.server_key + "\"",
                                  "--set", "service.store=\"" + dir.Path("coordinator.db") + "\"",
                                  "--set", "service.out_dir=\"" + dir.Path("run") + "\""};
    for (const auto& s : sets) {
      a.push_back("--set");
      a.push_back(s);
    }
    return a;
  }

  std::vector<std::string> ClientArgs(const std::string& name, uint32_t index, uint32_t of,
                                      const std::vector<std::string>& sets = {}) const {
    std::vector<std::string> a = {FRUGAL_CLIENT_BIN,
                                  "-i",
                                  "--set", "name=\"" + name + "\"",
                                  "--set", "coordinator.port_file=\"" + dir.Path("port") + "\"",
                                  "--set", "tls.ca_cert=\"" + CaPaths::In(ca_dir).ca_cert + "\"",
                                  "--set", "tls.cert=\"" + CaPaths::ClientCert(ca_dir, name) + "\"",
                                  "--set", "tls.key=\"" + CaPaths::ClientKey(ca_dir, name) + "\"",
                                  "--set", "state_dir=\"" + dir.Path("state-" + name) + "\"",
                                  "--set", "data.partition=\"dirichlet\"",
                                  "--set", "data.alpha=0.5",
                                  "--set", "data.seed=1",
                                  "--set", "data.clients=" + std::to_string(of),
                                  "--set", "data.index=" + std::to_string(index),
                                  "--set", "connection.backoff_initial_s=0.2",
                                  "--set", "connection.backoff_max_s=2"};
    for (const auto& s : sets) {
      a.push_back("--set");
      a.push_back(s);
    }
    return a;
  }

  // Agents device-0 .. device-(n-1), agent i on partition i of n, each logging to <name>.log.
  std::vector<std::unique_ptr<Process>> StartClients(uint32_t n) const {
    std::vector<std::unique_ptr<Process>> clients;
    for (uint32_t i = 0; i < n; ++i) {
      const std::string name = "device-" + std::to_string(i);
      clients.push_back(std::make_unique<Process>(ClientArgs(name, i, n), dir.Path(name + ".log")));
    }
    return clients;
  }
};

// The run's keys followed by `extra`.
std::vector<std::string> Plus(std::vector<std::string> keys, const std::vector<std::string>& extra) {
  keys.insert(keys.end(), extra.begin(), extra.end());
  return keys;
}

// Polls /status every 10 ms, at most 30,000 times, until `ready` holds of its
// answer; false if it never did. The test fails at once if the coordinator exits.
bool WaitForStatus(uint16_t status_port, Process& coordinator, const std::function<bool(const nlohmann::json&)>& ready) {
  for (int i = 0; i < 30000; ++i) {
    auto st = Status(status_port);
    if (st && st->is_object() && ready(*st)) return true;
    REQUIRE_FALSE(coordinator.Wait(0).has_value());
    SleepMs(10);
  }
  return false;
}

// The store holds rounds 1 .. `rounds` of `run_id`, each exactly once, in order.
void CheckRoundsCommittedOnce(const std::string& db, const std::string& run_id, uint32_t rounds) {
  auto store = Store::Open(db);
  REQUIRE(store.ok());
  auto rows = (*store)->Rounds(run_id);
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == rounds);
  for (uint32_t i = 0; i < rounds; ++i) CHECK((*rows)[i].round == i + 1);
}

// A TLS client driven by the test: connects with any certificate and sends raw bytes.
class RawTls {
 public:
  RawTls(const std::string& ca, const std::string& cert, const std::string& key) : ctx_(ssl::context::tls_client) {
    ctx_.load_verify_file(ca);
    ctx_.use_certificate_chain_file(cert);
    ctx_.use_private_key_file(key, ssl::context::pem);
    ctx_.set_verify_mode(ssl::verify_peer);
    stream_ = std::make_unique<ssl::stream<tcp::socket>>(io_, ctx_);
  }
  // True if TCP and the TLS handshake (client side) succeed.
  bool Connect(uint16_t port) {
    boost::system::error_code ec;
    stream_->lowest_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    if (ec) return false;
    stream_->handshake(ssl::stream_base::client, ec);
    return !ec;
  }
  bool Write(const std::vector<uint8_t>& bytes) {
    boost::system::error_code ec;
    asio::write(*stream_, asio::buffer(bytes), ec);
    return !ec;
  }
  // Half-closes the TCP write side (the coordinator then sees end of stream).
  void ShutdownWrite() {
    boost::system::error_code ec;
    stream_->lowest_layer().shutdown(tcp::socket::shutdown_send, ec);
  }
  // Reads until the peer closes or an error: returns the bytes received. The
  // coordinator closing the connection is what ends this call.
  std::vector<uint8_t> ReadUntilClosed() {
    std::vector<uint8_t> got;
    uint8_t buf[4096];
    boost::system::error_code ec;
    for (;;) {
      const size_t n = stream_->read_some(asio::buffer(buf), ec);
      got.insert(got.end(), buf, buf + n);
      if (ec) return got;
    }
  }
  // Reads one envelope (or nullopt on close/error).
  std::optional<v1::Envelope> ReadEnvelope() {
    uint8_t buf[4096];
    boost::system::error_code ec;
    for (;;) {
      auto next = decoder_.Next();
      if (!next.ok()) return std::nullopt;
      if (next->has_value()) return **next;
      const size_t n = stream_->read_some(asio::buffer(buf), ec);
      if (ec) return std::nullopt;
      if (!decoder_.Feed(std::span(buf, n)).ok()) return std::nullopt;
    }
  }

 private:
  asio::io_context io_;
  ssl::context ctx_;
  std::unique_ptr<ssl::stream<tcp::socket>> stream_;
  EnvelopeDecoder decoder_;
};

v1::Envelope HelloFor(const std::string& name) {
  v1::Envelope env;
  v1::Hello* h = env.mutable_hello();
  h->set_protocol_version(kProtocolVersion);
  h->set_client_name(name);
  h->set_device_class("phone-mid");
  h->set_radio("wifi");
  h->set_region("world");
  h->set_num_examples(100);
  h->set_input_dim(784);
  return env;
}

double MetricValue(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

}  // namespace

TEST_SUITE("coordinator") {
  TEST_CASE("ten client processes over mutual TLS reach 80% test accuracy at round 20, sending compressed updates") {
    std::vector<std::string> names;
    for (int i = 0; i < 10; ++i) names.push_back("device-" + std::to_string(i));
    Fleet fleet(names);
    Process coordinator(fleet.CoordinatorArgs({"run_id=\"e2e-accuracy\"", "rounds=20", "model=\"mlp\"",
                                               "pipeline=\"frugal\"", "round.clients_per_round=10",
                                               "round.min_clients=10", "round.deadline_s=600", "train.epochs=2",
                                               "train.learning_rate=0.05", "uplink.density=0.05",
                                               "downlink.broadcast_density=0.05", "round.eval_every=5"}),
                        fleet.dir.Path("coordinator.log"));
    WaitPort(fleet.dir.Path("port"), coordinator);
    std::vector<std::unique_ptr<Process>> clients;
    for (uint32_t i = 0; i < 10; ++i) {
      clients.push_back(std::make_unique<Process>(fleet.ClientArgs(names[i], i, 10),
                                                  fleet.dir.Path(names[i] + ".log")));
    }
    const auto code = coordinator.Wait(1500);
    INFO(ReadFile(fleet.dir.Path("coordinator.log")));
    REQUIRE(code.has_value());
    REQUIRE(*code == 0);
    for (auto& c : clients) CHECK(c->Wait(60) == std::optional<int>(0));

    auto records = ParseRoundsCsv(ReadFile(fleet.dir.Path("run/rounds.csv")));
    REQUIRE(records.ok());
    REQUIRE(records->size() == 20);
    uint64_t updates = 0, bytes_up = 0, bytes_down = 0, downloads = 0;
    for (const RoundRecord& r : *records) {
      CHECK(r.completed >= 1);
      CHECK(r.bytes_up > 0);
      CHECK(r.joules_compute > 0);
      updates += r.completed;
      bytes_up += r.bytes_up;
      bytes_down += r.bytes_down;
      downloads += r.selected;
    }
    // The model the run ends with, not its best round.
    MESSAGE("final accuracy " << records->back().accuracy);
    CHECK(records->back().accuracy >= 0.80);
    // The Frugal pipeline really compressed: a dense fp32 update of the
    // 784-200-200-10 MLP is 4 x 199,210 bytes; at 5% density with ternary
    // values and coded indices an update is about 1/80 of that. A pipeline
    // that fell back to dense (or to fp32 values) cannot pass 1/20.
    const double dense_bytes = 4.0 * 199210;
    REQUIRE(updates > 0);
    const double per_update = static_cast<double>(bytes_up) / static_cast<double>(updates);
    const double per_download = static_cast<double>(bytes_down) / static_cast<double>(downloads);
    MESSAGE("bytes per update " << per_update << ", per download " << per_download << ", dense " << dense_bytes);
    CHECK(per_update < dense_bytes / 20);
    CHECK(per_download < dense_bytes / 10);
    const auto summary = nlohmann::json::parse(ReadFile(fleet.dir.Path("run/summary.json")));
    CHECK(summary["rounds"] == 20);
    CHECK(summary["peak_rss_bytes"].get<uint64_t>() > 0);  // the coordinator's own peak, read by the core
    CHECK(std::filesystem::exists(fleet.dir.Path("run/ledger.csv")));
    CHECK(std::filesystem::exists(fleet.dir.Path("run/emissions.csv")));

    // Federated evaluation after rounds 5, 10, 15 and 20: the agents applied
    // the payload that followed each EvalTask and evaluated on their local data.
    std::istringstream fed(ReadFile(fleet.dir.Path("run/federated_eval.csv")));
    std::string line;
    REQUIRE(std::getline(fed, line));
    CHECK(line == "round,model_version,asked,answered,examples,accuracy,loss,bytes_down");
    int evaluations = 0;
    while (std::getline(fed, line)) {
      ++evaluations;
      INFO(line);
      std::vector<std::string> f;
      std::istringstream row(line);
      for (std::string cell; std::getline(row, cell, ',');) f.push_back(cell);
      REQUIRE(f.size() == 8);
      CHECK(std::stoi(f[0]) == 5 * evaluations);
      CHECK(std::stoi(f[3]) == 10);                   // every agent answered
      CHECK(std::stoull(f[4]) == 60000);              // together they hold the whole training set
      if (evaluations > 1) CHECK(std::stod(f[5]) > 0.6);  // a trained model, on the agents' own data
    }
    CHECK(evaluations == 4);
  }

  TEST_CASE("foreign certificates, plaintext, revoked identities and malformed streams are refused while the others are served") {
    // The revoked identity's name does not contain "revoked", so finding that
    // word in a log can only come from the refusal itself.
    Fleet fleet({"device-0", "device-1", "device-9"});
    // A second, unrelated CA whose client certificate must not be accepted.
    const std::string other_ca = fleet.dir.Path("other-ca");
    REQUIRE(InitCa(other_ca).ok());
    REQUIRE(IssueClientCert(other_ca, "device-0").ok());

    Process coordinator(fleet.CoordinatorArgs({"run_id=\"e2e-refusals\"", "rounds=5", "model=\"logreg\"",
                                               "round.clients_per_round=2", "round.min_clients=2",
                                               "round.interval_s=1.5", "service.revoked=[\"device-9\"]"}),
                        fleet.dir.Path("coordinator.log"));
    const uint16_t port = WaitPort(fleet.dir.Path("port"), coordinator);
    const uint16_t status_port = WaitPort(fleet.dir.Path("status_port"), coordinator);
    std::vector<std::unique_ptr<Process>> clients = fleet.StartClients(2);
    // Wait until the run is under way.
    for (int i = 0; i < 6000; ++i) {
      auto st = Status(status_port);
      if (st && st->is_object() && (*st)["rounds_completed"].get<int>() >= 1) break;
      REQUIRE_FALSE(coordinator.Wait(0).has_value());
      SleepMs(20);
    }
    const CaPaths ca = CaPaths::In(fleet.ca_dir);

    SUBCASE("attacks") {
      // A certificate from another CA: refused at the handshake (TLS 1.3 reports
      // it to the client on its first read), so no Register ever arrives.
      {
        RawTls t(ca.ca_cert, CaPaths::ClientCert(other_ca, "device-0"), CaPaths::ClientKey(other_ca, "device-0"));
        if (t.Connect(port)) {
          t.Write(*EncodeEnvelope(HelloFor("device-0")));
          CHECK_FALSE(t.ReadEnvelope().has_value());
        }
      }
      // Plaintext: not TLS, so the handshake fails and nothing is answered.
      {
        asio::io_context io;
        tcp::socket s(io);
        s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        const std::string junk = "GET / HTTP/1.0\r\n\r\n";
        boost::system::error_code ec;
        asio::write(s, asio::buffer(junk), ec);
        char buf[256];
        size_t total = 0;
        for (;;) {
          total += s.read_some(asio::buffer(buf), ec);
          if (ec) break;
        }
        // At most a TLS alert comes back; never a protocol frame.
        CHECK(total < 64);
      }
      const std::string cert0 = CaPaths::ClientCert(fleet.ca_dir, "device-0");
      const std::string key0 = CaPaths::ClientKey(fleet.ca_dir, "device-0");
      // Random bytes after a good handshake.
      {
        RawTls t(ca.ca_cert, cert0, key0);
        REQUIRE(t.Connect(port));
        Rng rng(5);
        std::vector<uint8_t> junk(1024);
        for (auto& b : junk) b = static_cast<uint8_t>(rng.NextU64());
        t.Write(junk);
        t.ShutdownWrite();
        CHECK(t.ReadUntilClosed().empty());
      }
      // An oversize length prefix: closed before any body is sent.
      {
        RawTls t(ca.ca_cert, cert0, key0);
        REQUIRE(t.Connect(port));
        t.Write({0x7f, 0xff, 0xff, 0xff});
        CHECK(t.ReadUntilClosed().empty());
      }
      // A truncated frame: the stream ends inside it.
      {
        RawTls t(ca.ca_cert, cert0, key0);
        REQUIRE(t.Connect(port));
        auto frame = EncodeEnvelope(HelloFor("device-0"));
        REQUIRE(frame.ok());
        frame->resize(frame->size() / 2);
        t.Write(*frame);
        t.ShutdownWrite();
        CHECK(t.ReadUntilClosed().empty());
      }
      // A revoked identity: the coordinator refuses it by name, the real client
      // is told PERMISSION_DENIED and stops at once with the refusal's exit code
      // (1), not the "gave up retrying" one (5) it would reach after
      // max_attempts failed connections.
      Process revoked(fleet.ClientArgs("device-9", 0, 2, {"connection.max_attempts=3"}),
                      fleet.dir.Path("revoked.log"));
      const auto revoked_code = revoked.Wait(120);
      REQUIRE(revoked_code.has_value());
      const std::string client_log = ReadFile(fleet.dir.Path("revoked.log"));
      INFO(client_log);
      CHECK(*revoked_code == 1);
      CHECK(client_log.find("PERMISSION_DENIED") != std::string::npos);
      CHECK(client_log.find("identity device-9 is revoked") != std::string::npos);
      // The coordinator's log line for the refusal names the identity and why.
      bool logged = false;
      for (int i = 0; i < 100 && !logged; ++i) {
        std::istringstream log(ReadFile(fleet.dir.Path("coordinator.log")));
        for (std::string line; std::getline(log, line) && !logged;) {
          logged = line.find("refusing") != std::string::npos && line.find("device-9") != std::string::npos &&
                   line.find("revoked") != std::string::npos;
        }
        if (!logged) SleepMs(50);
      }
      CHECK_MESSAGE(logged, "no coordinator log line refusing device-9 as revoked");

      const std::string metrics = HttpGet(status_port, "/metrics");
      INFO(metrics);
      CHECK(MetricValue(metrics, "frugal_handshakes_failed_total") >= 2);
      CHECK(MetricValue(metrics, "frugal_connections_closed_on_error_total") >= 3);
    }

    // The legitimate clients finished the run regardless.
    const auto code = coordinator.Wait(600);
    INFO(ReadFile(fleet.dir.Path("coordinator.log")));
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    for (auto& c : clients) CHECK(c->Wait(60) == std::optional<int>(0));
    auto records = ParseRoundsCsv(ReadFile(fleet.dir.Path("run/rounds.csv")));
    REQUIRE(records.ok());
    CHECK(records->size() == 5);
  }

  TEST_CASE("connections beyond the connection cap are told RESOURCE_EXHAUSTED while the others are served") {
    Fleet fleet({"device-0", "device-1", "device-2"});
    // No round opens (min_clients is never reached): every connection idles.
    Process coordinator(fleet.CoordinatorArgs({"run_id=\"e2e-cap\"", "rounds=1", "model=\"logreg\"",
                                               "round.min_clients=100", "service.max_connections=2"}),
                        fleet.dir.Path("coordinator.log"));
    const uint16_t port = WaitPort(fleet.dir.Path("port"), coordinator);
    const uint16_t status_port = WaitPort(fleet.dir.Path("status_port"), coordinator);
    const CaPaths ca = CaPaths::In(fleet.ca_dir);
    auto connect = [&](const std::string& name) {
      auto t = std::make_unique<RawTls>(ca.ca_cert, CaPaths::ClientCert(fleet.ca_dir, name),
                                        CaPaths::ClientKey(fleet.ca_dir, name));
      REQUIRE(t->Connect(port));
      REQUIRE(t->Write(*EncodeEnvelope(HelloFor(name))));
      return t;
    };
    auto a = connect("device-0");
    auto reg_a = a->ReadEnvelope();
    REQUIRE(reg_a.has_value());
    CHECK(reg_a->has_register_());
    auto b = connect("device-1");
    auto reg_b = b->ReadEnvelope();
    REQUIRE(reg_b.has_value());
    CHECK(reg_b->has_register_());

    // The third connection completes TLS, is told why, and is closed unregistered.
    {
      auto c = connect("device-2");
      auto refusal = c->ReadEnvelope();
      REQUIRE(refusal.has_value());
      REQUIRE(refusal->has_error());
      CHECK(refusal->error().code() == v1::Error::RESOURCE_EXHAUSTED);
      CHECK(refusal->error().reason() == "connection_cap");
      CHECK(refusal->error().message().find("connection cap of 2") != std::string::npos);
      CHECK_FALSE(c->ReadEnvelope().has_value());
    }

    // The registered ones are still served: a heartbeat request is answered.
    v1::Envelope hb;
    hb.mutable_heartbeat()->set_sequence(77);
    REQUIRE(a->Write(*EncodeEnvelope(hb)));
    bool answered = false;
    for (int i = 0; i < 10 && !answered; ++i) {
      auto env = a->ReadEnvelope();
      REQUIRE(env.has_value());
      answered = env->has_heartbeat() && env->heartbeat().reply() && env->heartbeat().sequence() == 77;
    }
    CHECK(answered);
    std::string metrics = HttpGet(status_port, "/metrics");
    CHECK(MetricValue(metrics, "frugal_connections_refused_total") == 1);
    CHECK(MetricValue(metrics, "frugal_connected_clients") == 2);

    // Once one leaves, a newcomer fits under the cap (retried until the
    // coordinator has seen the departure; refusals meanwhile are expected).
    a.reset();
    bool registered = false;
    for (int attempt = 0; attempt < 200 && !registered; ++attempt) {
      auto d = connect("device-2");
      auto env = d->ReadEnvelope();
      REQUIRE(env.has_value());
      registered = env->has_register_();
      if (!registered) {
        CHECK(env->error().reason() == "connection_cap");
        SleepMs(25);
      }
    }
    CHECK(registered);
    metrics = HttpGet(status_port, "/metrics");
    CHECK(MetricValue(metrics, "frugal_sessions") <= 2);
    coordinator.Terminate();
    const auto code = coordinator.Wait(60);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
  }

  TEST_CASE("kill -9 of the coordinator in the middle of round 3 and a restart commit rounds 1 to 20 exactly once") {
    Fleet fleet({"device-0", "device-1", "device-2", "device-3", "silent"});
    const std::vector<std::string> run = {"run_id=\"e2e-kill\"", "rounds=20", "model=\"logreg\"",
                                          "round.clients_per_round=5", "round.deadline_s=3"};
    auto coordinator = std::make_unique<Process>(fleet.CoordinatorArgs(Plus(run, {"round.min_clients=5"})),
                                                 fleet.dir.Path("coordinator-1.log"));
    const uint16_t port = WaitPort(fleet.dir.Path("port"), *coordinator);
    const uint16_t status_port = WaitPort(fleet.dir.Path("status_port"), *coordinator);
    std::vector<std::unique_ptr<Process>> clients = fleet.StartClients(4);
    // A registered client that never answers holds every round open until its
    // deadline, so round 3 is reliably in progress when the coordinator dies.
    const CaPaths ca = CaPaths::In(fleet.ca_dir);
    RawTls silent(ca.ca_cert, CaPaths::ClientCert(fleet.ca_dir, "silent"), CaPaths::ClientKey(fleet.ca_dir, "silent"));
    REQUIRE(silent.Connect(port));
    REQUIRE(silent.Write(*EncodeEnvelope(HelloFor("silent"))));
    REQUIRE(WaitForStatus(status_port, *coordinator,
                          [](const nlohmann::json& st) { return st["round"] == 3 && st["round_open"] == true; }));
    coordinator->Kill9();
    {
      auto store = Store::Open(fleet.dir.Path("coordinator.db"));
      REQUIRE(store.ok());
      auto rows = (*store)->Rounds("e2e-kill");
      REQUIRE(rows.ok());
      CHECK(rows->size() == 2);  // round 3 was not committed
    }
    std::filesystem::remove(fleet.dir.Path("port"));
    // Restart: the four agents reconnect on their own; the silent one is gone.
    coordinator = std::make_unique<Process>(fleet.CoordinatorArgs(Plus(run, {"round.min_clients=4"})),
                                            fleet.dir.Path("coordinator-2.log"));
    const auto code = coordinator->Wait(900);
    INFO(ReadFile(fleet.dir.Path("coordinator-2.log")));
    REQUIRE(code.has_value());
    REQUIRE(*code == 0);
    for (auto& c : clients) CHECK(c->Wait(60) == std::optional<int>(0));

    CheckRoundsCommittedOnce(fleet.dir.Path("coordinator.db"), "e2e-kill", 20);
    auto records = ParseRoundsCsv(ReadFile(fleet.dir.Path("run/rounds.csv")));
    REQUIRE(records.ok());
    REQUIRE(records->size() == 20);
    for (uint32_t i = 0; i < 20; ++i) CHECK((*records)[i].round == i + 1);
    CHECK(ReadFile(fleet.dir.Path("coordinator-2.log")).find("resuming run e2e-kill after round 2") !=
          std::string::npos);
  }
  TEST_CASE("a round's close runs off the I/O thread: held there, /status says closing and a client registers; kill -9 then resumes after the last committed round") {
    Fleet fleet({"device-0", "device-1", "device-2", "late"});
    const std::vector<std::string> run = {"run_id=\"e2e-close\"", "rounds=4", "model=\"logreg\"",
                                          "round.clients_per_round=3", "round.min_clients=3", "round.deadline_s=30"};
    // Round 2's close work waits on its worker thread until the test removes
    // the file (service.debug_hold_close_round, tests only).
    auto coordinator = std::make_unique<Process>(fleet.CoordinatorArgs(Plus(run, {"service.debug_hold_close_round=2"})),
                                                 fleet.dir.Path("coordinator-1.log"));
    const uint16_t port = WaitPort(fleet.dir.Path("port"), *coordinator);
    const uint16_t status_port = WaitPort(fleet.dir.Path("status_port"), *coordinator);
    std::vector<std::unique_ptr<Process>> clients = fleet.StartClients(3);
    const std::string hold = fleet.dir.Path("run/close_hold_r2");
    // The I/O thread shows the round closing as it hands the work over; the worker then writes the file.
    const bool closing = WaitForStatus(status_port, *coordinator, [&](const nlohmann::json& st) {
      return st["round"] == 2 && st["state"] == "closing" && std::filesystem::exists(hold);
    });
    INFO(ReadFile(fleet.dir.Path("coordinator-1.log")));
    REQUIRE(closing);  // the close work is the one held
    // The I/O thread serves while the close is held: /status again, /metrics, and a new client's handshake and Hello.
    for (int i = 0; i < 5; ++i) {
      auto st = Status(status_port);
      REQUIRE(st);
      CHECK((*st)["state"] == "closing");
      CHECK((*st)["round_closing"] == true);
      CHECK((*st)["round_open"] == false);
      CHECK((*st)["rounds_completed"] == 1);
      CHECK((*st)["model_version"] == 2);
    }
    CHECK(MetricValue(HttpGet(status_port, "/metrics"), "frugal_rounds_completed_total") == 1);
    const CaPaths ca = CaPaths::In(fleet.ca_dir);
    RawTls late(ca.ca_cert, CaPaths::ClientCert(fleet.ca_dir, "late"), CaPaths::ClientKey(fleet.ca_dir, "late"));
    REQUIRE(late.Connect(port));
    REQUIRE(late.Write(*EncodeEnvelope(HelloFor("late"))));
    auto reg = late.ReadEnvelope();
    REQUIRE(reg.has_value());
    REQUIRE(reg->has_register_());
    CHECK(reg->register_().run_id() == "e2e-close");
    {
      auto st = Status(status_port);
      REQUIRE(st);
      CHECK((*st)["connected_clients"] == 4);
      CHECK((*st)["state"] == "closing");
    }
    // Killed while the close work is held: round 2 was never committed.
    coordinator->Kill9();
    {
      auto store = Store::Open(fleet.dir.Path("coordinator.db"));
      REQUIRE(store.ok());
      auto rows = (*store)->Rounds("e2e-close");
      REQUIRE(rows.ok());
      CHECK(rows->size() == 1);
      auto state = (*store)->LoadRun("e2e-close");
      REQUIRE(state.ok());
      CHECK((*state)->last_round == 1);
      CHECK((*state)->version == 2);
    }
    std::filesystem::remove(fleet.dir.Path("port"));
    // Restart without the hold (a service key: the same run): the agents reconnect and rounds 2 to 4 commit.
    coordinator = std::make_unique<Process>(fleet.CoordinatorArgs(run), fleet.dir.Path("coordinator-2.log"));
    const auto code = coordinator->Wait(900);
    INFO(ReadFile(fleet.dir.Path("coordinator-2.log")));
    REQUIRE(code.has_value());
    REQUIRE(*code == 0);
    for (auto& c : clients) CHECK(c->Wait(60) == std::optional<int>(0));
    CheckRoundsCommittedOnce(fleet.dir.Path("coordinator.db"), "e2e-close", 4);
    CHECK(ReadFile(fleet.dir.Path("coordinator-2.log")).find("resuming run e2e-close after round 1") !=
          std::string::npos);
  }

  TEST_CASE("a round's close runs off the I/O thread: SIGTERM while it is held waits for the round's commit, then stops cleanly") {
    Fleet fleet({"device-0", "device-1"});
    auto coordinator = std::make_unique<Process>(
        fleet.CoordinatorArgs({"run_id=\"e2e-close-term\"", "rounds=3", "model=\"logreg\"",
                               "round.clients_per_round=2", "round.min_clients=2", "round.deadline_s=30",
                               "service.debug_hold_close_round=1"}),
        fleet.dir.Path("coordinator.log"));
    WaitPort(fleet.dir.Path("port"), *coordinator);
    const uint16_t status_port = WaitPort(fleet.dir.Path("status_port"), *coordinator);
    std::vector<std::unique_ptr<Process>> clients = fleet.StartClients(2);
    const std::string hold = fleet.dir.Path("run/close_hold_r1");
    // The worker holds the close (it writes the file after the hand-over).
    const bool closing = WaitForStatus(status_port, *coordinator, [&](const nlohmann::json& st) {
      return st["round"] == 1 && st["state"] == "closing" && std::filesystem::exists(hold);
    });
    INFO(ReadFile(fleet.dir.Path("coordinator.log")));
    REQUIRE(closing);
    coordinator->Terminate();
    // The signal is taken, and the service goes on serving until the close it waits for is committed.
    bool deferred = false;
    for (int i = 0; i < 3000 && !deferred; ++i) {
      deferred = ReadFile(fleet.dir.Path("coordinator.log")).find("stopping once round 1 is committed") !=
                 std::string::npos;
      if (!deferred) SleepMs(10);
    }
    REQUIRE(deferred);
    REQUIRE_FALSE(coordinator->Wait(0).has_value());
    auto st = Status(status_port);
    REQUIRE(st);
    CHECK((*st)["state"] == "closing");
    std::filesystem::remove(hold);
    const auto code = coordinator->Wait(300);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    // The held round, committed before the stop; no round after it.
    CheckRoundsCommittedOnce(fleet.dir.Path("coordinator.db"), "e2e-close-term", 1);
    CHECK(ReadFile(fleet.dir.Path("run/rounds.csv")).find("\n1,") != std::string::npos);
  }

  TEST_CASE("a round's close runs off the I/O thread: a secure round's unmasking is held with it, /status says closing, and the round then commits the survivors' sum") {
    Fleet fleet({"device-0", "device-1", "device-2", "device-3"});
    auto coordinator = std::make_unique<Process>(
        fleet.CoordinatorArgs({"run_id=\"e2e-close-secure\"", "rounds=2", "model=\"logreg\"", "pipeline=\"secure\"",
                               "round.clients_per_round=4", "round.min_clients=4", "round.deadline_s=60",
                               "secure.stage_timeout_s=60", "secure.debug_dump=true", "eval.examples=200",
                               "service.debug_hold_close_round=1"}),
        fleet.dir.Path("coordinator.log"));
    WaitPort(fleet.dir.Path("port"), *coordinator);
    const uint16_t status_port = WaitPort(fleet.dir.Path("status_port"), *coordinator);
    std::vector<std::unique_ptr<Process>> clients = fleet.StartClients(4);
    const std::string hold = fleet.dir.Path("run/close_hold_r1");
    const std::string dump = fleet.dir.Path("run/secagg_sum_r1.bin");
    const bool closing = WaitForStatus(status_port, *coordinator, [&](const nlohmann::json& st) {
      return st["round"] == 1 && st["state"] == "closing" && std::filesystem::exists(hold);
    });
    INFO(ReadFile(fleet.dir.Path("coordinator.log")));
    REQUIRE(closing);
    // Every unmask response is in, and the unmasking waits with the rest of
    // the close: its sum is dumped only when the result is applied.
    CHECK_FALSE(std::filesystem::exists(dump));
    CHECK(ReadFile(fleet.dir.Path("coordinator.log")).find("unmasked the sum") == std::string::npos);
    auto st = Status(status_port);
    REQUIRE(st);
    CHECK((*st)["state"] == "closing");
    CHECK((*st)["rounds_completed"] == 0);
    std::filesystem::remove(hold);
    const auto code = coordinator->Wait(600);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    for (auto& c : clients) CHECK(c->Wait(60) == std::optional<int>(0));
    CheckRoundsCommittedOnce(fleet.dir.Path("coordinator.db"), "e2e-close-secure", 2);
    const std::string log = ReadFile(fleet.dir.Path("coordinator.log"));
    CHECK(log.find("round 1: unmasked the sum of 4 clients") != std::string::npos);
    CHECK(log.find("secure aggregation failed") == std::string::npos);
    CHECK(std::filesystem::exists(dump));
  }

  TEST_CASE("secure pipeline: ten client processes, two killed after sharing keys, rounds end with the exact sum of the survivors' ring inputs") {
    // With distributed DP: each client clips and adds Skellam noise keyed
    // from its own RAND_bytes, and the coordinator accounts each round with
    // the noise of the survivors only.
    std::vector<std::string> names;
    for (int i = 0; i < 10; ++i) names.push_back("secure-" + std::to_string(i));
    names.push_back("intruder");
    Fleet fleet(names);
    names.pop_back();
    const int bits = 32;
    const std::vector<std::string> sets = {"run_id=\"e2e-secure\"", "rounds=3", "model=\"logreg\"",
                                           "pipeline=\"secure\"", "round.clients_per_round=10",
                                           "round.min_clients=10", "round.deadline_s=600", "train.epochs=1",
                                           "secure.bits=" + std::to_string(bits), "secure.stage_timeout_s=60",
                                           "secure.debug_dump=true", "eval.examples=500",
                                           "privacy.mode=\"distributed\"", "privacy.clip=1",
                                           "privacy.noise_multiplier=0.8",
                                           // Rounds 2 and 3 carry a non-empty support guide to real agents,
                                           // or tell those keeping their steps (clients 0-4) to derive it.
                                           "secure.guided=0.05", "secure.derive_guide=true",
                                           // Keys bound to the fleet CA's credentials (`ca issue` wrote the .idc files).
                                           "secure.identity=\"ca\""};
    Process coordinator(fleet.CoordinatorArgs(sets), fleet.dir.Path("coordinator.log"));
    const uint16_t port = WaitPort(fleet.dir.Path("port"), coordinator);
    // Two clients hold back their masked input in round 1 (debug.secagg_hold_round),
    // so they are reliably between stage 2 and stage 3 when the test kills them.
    const std::set<uint32_t> killed = {3, 7};
    std::vector<std::unique_ptr<Process>> clients;
    auto start = [&](uint32_t i) {
      std::vector<std::string> extra = {"secure.require_identity=true"};
      if (killed.contains(i)) extra.push_back("debug.secagg_hold_round=1");
      if (i < 5) extra.push_back("secure.history_steps=20");
      return std::make_unique<Process>(fleet.ClientArgs(names[i], i, 10, extra),
                                       fleet.dir.Path(names[i] + "-" + std::to_string(clients.size()) + ".log"));
    };
    for (uint32_t i = 0; i < 10; ++i) clients.push_back(start(i));
    auto state = [&](uint32_t i, const std::string& file) { return fleet.dir.Path("state-" + names[i]) + "/" + file; };
    for (int t = 0; t < 60000; ++t) {
      bool held = true;
      for (uint32_t i : killed) held = held && std::filesystem::exists(state(i, "secagg_hold_r1"));
      if (held) break;
      REQUIRE_FALSE(coordinator.Wait(0).has_value());
      SleepMs(10);
    }
    for (uint32_t i : killed) REQUIRE(std::filesystem::exists(state(i, "secagg_hold_r1")));

    // While round 1 waits in stage 3: a registered client sends a stage
    // message for another round; it is refused, naming the round, and leaves.
    {
      const CaPaths ca = CaPaths::In(fleet.ca_dir);
      RawTls intruder(ca.ca_cert, CaPaths::ClientCert(fleet.ca_dir, "intruder"),
                      CaPaths::ClientKey(fleet.ca_dir, "intruder"));
      REQUIRE(intruder.Connect(port));
      REQUIRE(intruder.Write(*EncodeEnvelope(HelloFor("intruder"))));
      v1::Envelope bad;
      bad.set_protocol_version(kProtocolVersion);
      bad.mutable_secagg()->set_round(7);
      bad.mutable_secagg()->set_stage(3);
      bad.mutable_secagg()->set_body(std::string(40, '\x01'));
      REQUIRE(intruder.Write(*EncodeEnvelope(bad)));
      std::optional<v1::Envelope> reply;
      do reply = intruder.ReadEnvelope();
      while (reply && !reply->has_error());
      REQUIRE(reply.has_value());
      CHECK(reply->error().code() == v1::Error::FAILED_PRECONDITION);
      CHECK(reply->error().round() == 7);
      INFO(reply->error().message());
      CHECK(reply->error().message().find("for round 7: the open secure round is 1") != std::string::npos);
    }
    for (uint32_t i : killed) {
      clients[i]->Kill9();
      CHECK(clients[i]->Wait(30) == std::optional<int>(128 + SIGKILL));
    }
    // Round 1 completes with the eight survivors; the two come back for rounds 2 and 3.
    for (int t = 0; t < 60000 && !std::filesystem::exists(fleet.dir.Path("run/secagg_sum_r1.bin")); ++t) {
      REQUIRE_FALSE(coordinator.Wait(0).has_value());
      SleepMs(10);
    }
    for (uint32_t i : killed) clients[i] = start(i);
    const auto code = coordinator.Wait(900);
    const std::string log = ReadFile(fleet.dir.Path("coordinator.log"));
    INFO(log);
    REQUIRE(code.has_value());
    REQUIRE(*code == 0);
    for (auto& c : clients) CHECK(c->Wait(60) == std::optional<int>(0));
    CHECK(log.find("refused a SecAgg message from intruder") != std::string::npos);
    // Clients 0-4 keep their steps (a restarted one starts again from version 1): they derive the guide.
    CHECK(log.find("round 1: 0 of 10 clients derive the support guide") != std::string::npos);
    CHECK(log.find("round 2: 5 of 10 clients derive the support guide") != std::string::npos);
    CHECK(log.find("round 3: 5 of 10 clients derive the support guide") != std::string::npos);

    // Exactness: the coordinator's unmasked sum equals the plain sum, mod
    // 2^bits, of the ring inputs the survivors wrote (secure.debug_dump).
    auto read_ring = [](const std::string& path) {
      const std::string bytes = ReadFile(path);
      std::vector<uint64_t> v(bytes.size() / 8);
      for (size_t i = 0; i < v.size(); ++i) {
        for (int b = 0; b < 8; ++b) v[i] |= uint64_t{static_cast<uint8_t>(bytes[8 * i + b])} << (8 * b);
      }
      return v;
    };
    const uint64_t mask = (uint64_t{1} << bits) - 1;
    for (uint32_t round = 1; round <= 3; ++round) {
      CAPTURE(round);
      const std::vector<uint64_t> sum = read_ring(fleet.dir.Path("run/secagg_sum_r" + std::to_string(round) + ".bin"));
      REQUIRE(!sum.empty());
      std::vector<uint64_t> expect(sum.size(), 0);
      std::set<std::string> survivors;
      for (uint32_t i = 0; i < 10; ++i) {
        if (round == 1 && killed.contains(i)) {
          CHECK_FALSE(std::filesystem::exists(state(i, "secagg_input_r1.bin")));  // held before quantizing
          continue;
        }
        const std::vector<uint64_t> input = read_ring(state(i, "secagg_input_r" + std::to_string(round) + ".bin"));
        REQUIRE(input.size() == sum.size());
        for (size_t j = 0; j < input.size(); ++j) expect[j] = (expect[j] + input[j]) & mask;
        survivors.insert(names[i]);
      }
      CHECK(sum == expect);
      std::set<std::string> listed;
      std::istringstream in(ReadFile(fleet.dir.Path("run/secagg_sum_r" + std::to_string(round) + ".survivors")));
      for (std::string name; std::getline(in, name);) listed.insert(name);
      CHECK(listed == survivors);
    }
    auto records = ParseRoundsCsv(ReadFile(fleet.dir.Path("run/rounds.csv")));
    REQUIRE(records.ok());
    REQUIRE(records->size() == 3);
    CHECK((*records)[0].selected == 10);
    CHECK((*records)[0].completed == 8);
    CHECK((*records)[1].completed == 10);
    CHECK((*records)[2].completed == 10);
    // ε after each round is the accountant's for that round's survivors
    // (8 in round 1: the two killed clients' noise never reached the sum),
    // at q = 10 selected / 10 connected, recomputed here with the core's
    // accountant on the ring the configuration plans.
    auto cfg = ParseCoordinatorConfig("", "test", sets);
    REQUIRE(cfg.ok());
    auto ring = privacy::PlanDistributedRing(cfg->engine.dp, cfg->engine.secure.ring, cfg->engine.secure.dropout,
                                             UplinkKeepCount(cfg->engine.uplink_density, 7850));
    REQUIRE(ring.ok());
    // The service selects a fixed number of its connected clients (round.sampling = "fixed"), so every round
    // is accounted with the fixed-size bound under replace-one adjacency; the Poisson bound would differ.
    REQUIRE(cfg->engine.dp.sampling == privacy::SamplingScheme::kFixedSize);
    privacy::RdpAccountant accountant;
    double previous = 0;
    for (size_t r = 0; r < 3; ++r) {
      CAPTURE(r);
      REQUIRE(privacy::ComposeDistributedSkellam(accountant, privacy::SamplingScheme::kFixedSize, 1.0, ring->ring.noise_mu, (*records)[r].completed,
                                                 ring->l1_levels, ring->l2_levels)
                  .ok());
      auto spent = accountant.Spent(cfg->engine.dp.delta);
      REQUIRE(spent.ok());
      CHECK((*records)[r].dp_epsilon == spent->epsilon);
      CHECK((*records)[r].dp_delta == cfg->engine.dp.delta);
      CHECK((*records)[r].dp_epsilon > previous);
      previous = (*records)[r].dp_epsilon;
    }
    // Fewer survivors, less noise: round 1 alone costs more than a full round.
    {
      privacy::RdpAccountant full;
      REQUIRE(privacy::ComposeDistributedSkellam(full, privacy::SamplingScheme::kFixedSize, 1.0, ring->ring.noise_mu, 10, ring->l1_levels,
                                                 ring->l2_levels)
                  .ok());
      CHECK((*records)[0].dp_epsilon > full.Spent(cfg->engine.dp.delta)->epsilon);
    }
    // The protocol's cost per round (every byte up is a protocol message; the
    // agents' reported CPU of all four stages) and its totals in summary.json.
    uint64_t up = 0, down = 0;
    double cpu = 0;
    for (const RoundRecord& r : *records) {
      CHECK(r.protocol_bytes_up == r.bytes_up);
      CHECK(r.protocol_bytes_down > 0);
      CHECK(r.protocol_bytes_down < r.bytes_down);  // the model payloads are not protocol bytes
      CHECK(r.protocol_cpu_seconds > 0);
      up += r.protocol_bytes_up;
      down += r.protocol_bytes_down;
      cpu += r.protocol_cpu_seconds;
    }
    const auto summary = nlohmann::json::parse(ReadFile(fleet.dir.Path("run/summary.json")));
    const auto& m = summary.at("extra_metrics");
    CHECK(m.at("secure_protocol_bytes_up").get<double>() == static_cast<double>(up));
    CHECK(m.at("secure_protocol_bytes_down").get<double>() == static_cast<double>(down));
    CHECK(m.at("secure_client_cpu_seconds").get<double>() == doctest::Approx(cpu).epsilon(1e-9));
    CHECK(m.at("secure_failed_rounds").get<double>() == 0);
    CHECK(summary.at("dp_epsilon").get<double>() == records->back().dp_epsilon);
    // The killed clients' keys and shares went up before they died: on the ledger.
    std::istringstream ledger(ReadFile(fleet.dir.Path("run/ledger.csv")));
    std::string line;
    REQUIRE(std::getline(ledger, line));
    int dropped = 0;
    while (std::getline(ledger, line)) {
      if (line.find(",dropped,") == std::string::npos) continue;
      ++dropped;
    }
    CHECK(dropped == 2);
  }

  TEST_CASE("secure pipeline with merged format version 4: agents that miss rounds rebuild each missed round's support from the steps they keep, and every round completes") {
    // Six agents keeping their last 20 steps, three a round: an agent picked
    // again after missing rounds gets its missed steps as one piece coded
    // given each round's support (when smaller than version 2), decodes it
    // against its kept steps, and trains; a decoding failure would leave a
    // round short of its three.
    std::vector<std::string> names;
    for (int i = 0; i < 6; ++i) names.push_back("v4-" + std::to_string(i));
    Fleet fleet(names);
    const std::vector<std::string> sets = {"run_id=\"e2e-secure-v4\"", "rounds=10", "model=\"logreg\"",
                                           "pipeline=\"secure\"", "round.clients_per_round=3",
                                           "round.min_clients=3", "round.deadline_s=600", "train.epochs=1",
                                           "secure.bits=16", "secure.stage_timeout_s=60", "eval.examples=200",
                                           "secure.guided=0.05", "secure.guide_rounds=2", "secure.derive_guide=true",
                                           "downlink.merge_chains=true", "downlink.merge_version=4"};
    Process coordinator(fleet.CoordinatorArgs(sets), fleet.dir.Path("coordinator.log"));
    WaitPort(fleet.dir.Path("port"), coordinator);
    std::vector<std::unique_ptr<Process>> clients;
    for (uint32_t i = 0; i < names.size(); ++i) {
      clients.push_back(std::make_unique<Process>(fleet.ClientArgs(names[i], i, 6, {"secure.history_steps=20"}),
                                                  fleet.dir.Path(names[i] + ".log")));
    }
    const auto code = coordinator.Wait(900);
    const std::string log = ReadFile(fleet.dir.Path("coordinator.log"));
    INFO(log);
    REQUIRE(code.has_value());
    REQUIRE(*code == 0);
    for (auto& c : clients) CHECK(c->Wait(60) == std::optional<int>(0));
    auto records = ParseRoundsCsv(ReadFile(fleet.dir.Path("run/rounds.csv")));
    REQUIRE(records.ok());
    REQUIRE(records->size() == 10);
    for (const auto& r : *records) CHECK(r.completed == 3);
    // Some tasks did carry a version-4 piece (the coordinator counts them as it plans each round).
    size_t v4 = 0;
    for (size_t at = log.find("clients get a merged piece of format version 4"); at != std::string::npos;
         at = log.find("clients get a merged piece of format version 4", at + 1)) {
      const size_t colon = log.rfind(": ", at);
      v4 += std::stoul(log.substr(colon + 2, at - colon - 2));
    }
    CHECK(v4 > 0);
    MESSAGE("tasks with a version-4 piece: " << v4);
  }

  TEST_CASE("[prune] and [widths] through the service: three client processes, a prune step after round 2, a half-width device class, and kill -9 of the coordinator after the prune") {
    const std::vector<std::string> names = {"lean-0", "lean-1", "lean-low"};
    Fleet fleet(names);
    constexpr uint32_t kRounds = 4;
    const std::vector<std::string> args = {"run_id=\"e2e-lean\"", "rounds=4", "model=\"mlp\"",
                                           "round.clients_per_round=3", "round.min_clients=3",
                                           "round.deadline_s=600", "train.epochs=1", "eval.examples=500",
                                           "server.averaging=\"support\"", "prune.target_flops_fraction=0.5",
                                           "prune.start_round=2", "prune.steps=1", "prune.every=1",
                                           "widths.devices={phone-low=0.5}"};
    auto coordinator = std::make_unique<Process>(fleet.CoordinatorArgs(args), fleet.dir.Path("coordinator-1.log"));
    WaitPort(fleet.dir.Path("port"), *coordinator);
    const uint16_t status_port = WaitPort(fleet.dir.Path("status_port"), *coordinator);
    std::vector<std::unique_ptr<Process>> clients;
    // Three shares of a 60-way split (about 1,000 examples each): a few seconds of training in all.
    for (uint32_t i = 0; i < 3; ++i) {
      std::vector<std::string> extra;
      if (names[i] == "lean-low") extra.push_back("device.class=\"phone-low\"");
      clients.push_back(
          std::make_unique<Process>(fleet.ClientArgs(names[i], i, 60, extra), fleet.dir.Path(names[i] + ".log")));
    }
    // Kill -9 once round 2 (and the prune step after it) is committed: the restarted coordinator must resume the
    // pruned model from the store, and the agents, which hold it, keep training on the pruned shape.
    bool pruned_committed = false;
    for (int i = 0; i < 60000 && !pruned_committed; ++i) {
      auto st = Status(status_port);
      pruned_committed = st && st->is_object() && (*st)["rounds_completed"].get<int>() >= 2;
      if (!pruned_committed) {
        REQUIRE_FALSE(coordinator->Wait(0).has_value());
        SleepMs(10);
      }
    }
    REQUIRE(pruned_committed);
    coordinator->Kill9();
    uint32_t committed_before = 0;
    {
      auto store = Store::Open(fleet.dir.Path("coordinator.db"));
      REQUIRE(store.ok());
      auto rows = (*store)->Rounds("e2e-lean");
      REQUIRE(rows.ok());
      committed_before = static_cast<uint32_t>(rows->size());
      REQUIRE(committed_before >= 2);
      REQUIRE(committed_before < kRounds);  // the restart has rounds to run
      auto run = (*store)->LoadRun("e2e-lean");
      REQUIRE(run.ok());
      REQUIRE(run->has_value());
      CHECK_FALSE((*run)->shape.empty());
    }
    CHECK(ReadFile(fleet.dir.Path("coordinator-1.log")).find("round 2: pruned the model to") != std::string::npos);
    std::filesystem::remove(fleet.dir.Path("port"));
    std::filesystem::remove(fleet.dir.Path("status_port"));
    coordinator = std::make_unique<Process>(fleet.CoordinatorArgs(args), fleet.dir.Path("coordinator-2.log"));
    const auto code = coordinator->Wait(600);
    const std::string log = ReadFile(fleet.dir.Path("coordinator-2.log"));
    INFO(log);
    REQUIRE(code.has_value());
    REQUIRE(*code == 0);
    for (auto& c : clients) CHECK(c->Wait(60) == std::optional<int>(0));
    CHECK(log.find("resuming run e2e-lean after round " + std::to_string(committed_before)) != std::string::npos);
    CHECK(log.find("resuming the pruned model") != std::string::npos);

    auto records = ParseRoundsCsv(ReadFile(fleet.dir.Path("run/rounds.csv")));
    REQUIRE(records.ok());
    REQUIRE(records->size() == kRounds);
    for (uint32_t i = 0; i < kRounds; ++i) {
      CHECK((*records)[i].round == i + 1);
      CHECK((*records)[i].completed == 3);
    }
    // The final model is the pruned one: half the unpruned training FLOPs per example at most.
    const std::vector<uint32_t> unpruned = {784, 200, 200, 10};
    const std::vector<uint32_t> pruned = WidthsForFlopsFraction(unpruned, 0.5);
    const std::vector<uint32_t> pruned_sizes = {784, pruned[0], pruned[1], 10};
    CHECK(MlpTrainFlops(pruned_sizes) <= 0.5 * MlpTrainFlops(unpruned));
    auto store = Store::Open(fleet.dir.Path("coordinator.db"));
    REQUIRE(store.ok());
    auto run = (*store)->LoadRun("e2e-lean");
    REQUIRE(run.ok());
    REQUIRE(run->has_value());
    CHECK((*run)->model.size() == MlpParamCount(pruned_sizes));
    // Model versions are continuous across the restart: round r's commit made version r + 1, the prune step
    // version 4 (after round 2's version 3), and every later round one more.
    auto stored_rounds = (*store)->Rounds("e2e-lean");
    REQUIRE(stored_rounds.ok());
    REQUIRE(stored_rounds->size() == kRounds);
    for (const RoundRow& r : *stored_rounds) {
      CAPTURE(r.round);
      CHECK(r.applied);
      CHECK(r.new_version == (r.round <= 2 ? r.round + 1 : r.round + 2));
    }
    CHECK((*run)->version == kRounds + 2);
    // Every agent ends on the pruned shape: its residual file (magic, dimension, CRC, floats) has the pruned
    // dimension, or the narrow client's the pruned model's (its residual covers the whole model).
    for (const std::string& name : names) {
      CAPTURE(name);
      const std::string resid = ReadFile(fleet.dir.Path("state-" + name) + "/residual.bin");
      REQUIRE(resid.size() >= 12);
      uint32_t dim = 0;
      std::memcpy(&dim, resid.data() + 4, 4);
      CHECK(dim == MlpParamCount(pruned_sizes));
    }
    // The ledger prices the narrow client's participations at its sub-network's FLOPs (one epoch over its examples).
    auto roster = ParseClientsCsv(ReadFile(fleet.dir.Path("run/clients.csv")));
    REQUIRE(roster.ok());
    std::map<uint64_t, RosterEntry> by_id;
    for (const RosterEntry& e : *roster) by_id[e.id] = e;
    auto ledger = (*store)->Ledger("e2e-lean");
    REQUIRE(ledger.ok());
    int narrow_rows = 0, wide_rows = 0;
    for (const LedgerRow& row : *ledger) {
      if (row.outcome != ClientOutcome::kParticipated) continue;
      REQUIRE(by_id.contains(row.client_id));
      const RosterEntry& who = by_id[row.client_id];
      const std::vector<uint32_t>& sizes = row.round <= 2 ? unpruned : pruned_sizes;
      const bool narrow = who.name == "lean-low";
      const std::vector<uint32_t> trained = narrow ? NestedSubnetwork(sizes, 0.5).NewSizes() : sizes;
      CAPTURE(row.round);
      CAPTURE(who.name);
      CHECK(row.flops == doctest::Approx(MlpTrainFlops(trained) * static_cast<double>(who.examples)).epsilon(1e-9));
      (narrow ? narrow_rows : wide_rows)++;
    }
    CHECK(narrow_rows == static_cast<int>(kRounds));
    CHECK(wide_rows == 2 * static_cast<int>(kRounds));
  }
}

}  // namespace frugal::coordinator
