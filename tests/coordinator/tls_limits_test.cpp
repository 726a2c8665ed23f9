// The coordinator's refusals and limits that no other test reaches, against a
// real frugal-coordinator process on loopback: TLS 1.2 refused, the handshake
// and idle timeouts closing silent connections, a peer that stops reading
// dropped at the write-queue limit while another is served, PROTOCOL_VERSION
// and UNAUTHENTICATED answered by code, a frugal-client with a foreign
// certificate stopping with its exit code, and bad TLS paths and an unknown
// model refused before the store file exists. No assertion is about time:
// each wait has a generous ceiling only so that a regression fails instead of hanging.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "coordinator/child_process.h"
#include "data/temp_dir.h"
#include "frugal/coordinator/ca.h"
#include "frugal/proto/frame.h"

namespace frugal::coordinator {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

using testing::Process;
using testing::ReadFile;
using testing::SleepMs;

// Whether the log at `path` says `text`, once the writer gets there (the
// peer sees a refusal before the coordinator's log line is written).
bool LogSays(const std::string& path, const std::string& text) {
  for (int i = 0; i < 600; ++i) {
    if (ReadFile(path).find(text) != std::string::npos) return true;
    SleepMs(50);
  }
  return false;
}

// A CA with two client identities and the coordinator's command line.
struct Fixture {
  testing::TempDir dir;
  std::string ca_dir = dir.Path("ca");
  CaPaths ca = CaPaths::In(ca_dir);

  Fixture() {
    REQUIRE(InitCa(ca_dir).ok());
    for (const char* c : {"device-0", "device-1"}) REQUIRE(IssueClientCert(ca_dir, c).ok());
  }

  std::vector<std::string> CoordinatorArgs(const std::vector<std::string>& sets) const {
    std::vector<std::string> a = {FRUGAL_COORDINATOR_BIN, "run", "-v",
                                  "--set", "run_id=\"limits\"",
                                  "--set", "model=\"logreg\"",
                                  "--set", "round.min_clients=100",  // no round opens: connections idle
                                  "--set", "service.port=0",
                                  "--set", "service.port_file=\"" + dir.Path("port") + "\"",
                                  "--set", "service.status_port=0",
                                  "--set", "service.ca_cert=\"" + ca.ca_cert + "\"",
                                  "--set", "service.server_cert=\"" + ca.server_cert + "\"",
                                  "--set", "service.server_key=\"" + ca.server_key + "\"",
                                  "--set", "service.store=\"" + dir.Path("coordinator.db") + "\"",
                                  "--set", "service.out_dir=\"" + dir.Path("run") + "\""};
    for (const auto& s : sets) {
      a.push_back("--set");
      a.push_back(s);
    }
    return a;
  }

  uint16_t WaitPort(Process& owner) const {
    for (int i = 0; i < 1200; ++i) {
      std::ifstream in(dir.Path("port"));
      uint32_t port = 0;
      if (in >> port && port > 0) return static_cast<uint16_t>(port);
      REQUIRE_FALSE(owner.Wait(0).has_value());
      SleepMs(50);
    }
    FAIL("no port file");
    return 0;
  }
};

// A TLS client driven by the test; `tls12` offers TLS 1.2 only.
class RawTls {
 public:
  RawTls(const CaPaths& ca, const std::string& cert, const std::string& key, bool tls12 = false)
      : ctx_(tls12 ? ssl::context::tlsv12_client : ssl::context::tls_client) {
    ctx_.load_verify_file(ca.ca_cert);
    ctx_.use_certificate_chain_file(cert);
    ctx_.use_private_key_file(key, ssl::context::pem);
    ctx_.set_verify_mode(ssl::verify_peer);
    stream_ = std::make_unique<ssl::stream<tcp::socket>>(io_, ctx_);
  }
  // TCP only; a receive timeout bounds every later read so a regression fails, not hangs.
  void ConnectTcp(uint16_t port, int small_receive_buffer = 0) {
    tcp::socket& s = stream_->next_layer();
    s.open(tcp::v4());
    if (small_receive_buffer > 0) s.set_option(asio::socket_base::receive_buffer_size(small_receive_buffer));
    const timeval tv{60, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  bool Handshake() {
    boost::system::error_code ec;
    stream_->handshake(ssl::stream_base::client, ec);
    return !ec;
  }
  bool Write(const v1::Envelope& env) {
    auto bytes = EncodeEnvelope(env);
    REQUIRE(bytes.ok());
    return WriteBytes(*bytes);
  }
  bool WriteBytes(const std::vector<uint8_t>& bytes) {
    boost::system::error_code ec;
    asio::write(*stream_, asio::buffer(bytes), ec);
    return !ec;
  }
  // The next Envelope, or nullopt once the coordinator closed the connection.
  std::optional<v1::Envelope> Read() {
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
  // True once the TCP connection is closed by the peer (raw, below TLS).
  bool ClosedByPeer() {
    char c;
    const ssize_t n = ::recv(stream_->next_layer().native_handle(), &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  asio::io_context io_;
  ssl::context ctx_;
  std::unique_ptr<ssl::stream<tcp::socket>> stream_;
  EnvelopeDecoder decoder_;
};

v1::Envelope HelloFor(const std::string& name, uint32_t protocol = kProtocolVersion) {
  v1::Envelope env;
  v1::Hello* h = env.mutable_hello();
  h->set_protocol_version(protocol);
  h->set_client_name(name);
  h->set_device_class("phone-mid");
  h->set_radio("wifi");
  h->set_region("world");
  h->set_num_examples(100);
  h->set_input_dim(784);
  return env;
}

}  // namespace

TEST_SUITE("coordinator") {
  TEST_CASE("TLS 1.2, silent connections and a peer that stops reading are refused or dropped while others are served") {
    Fixture f;
    Process coordinator(f.CoordinatorArgs({"service.handshake_timeout_s=1", "service.idle_timeout_s=2",
                                           "service.heartbeat_s=1.5", "service.write_queue_limit=4"}),
                        f.dir.Path("coordinator.log"));
    const uint16_t port = f.WaitPort(coordinator);
    const std::string cert0 = CaPaths::ClientCert(f.ca_dir, "device-0"), key0 = CaPaths::ClientKey(f.ca_dir, "device-0");
    const std::string cert1 = CaPaths::ClientCert(f.ca_dir, "device-1"), key1 = CaPaths::ClientKey(f.ca_dir, "device-1");

    SUBCASE("a client offering only TLS 1.2 fails the handshake") {
      RawTls t(f.ca, cert0, key0, /*tls12=*/true);
      t.ConnectTcp(port);
      CHECK_FALSE(t.Handshake());
      CHECK(LogSays(f.dir.Path("coordinator.log"), "TLS handshake with"));
    }
    SUBCASE("a connection silent before the handshake is closed by the handshake timeout") {
      RawTls t(f.ca, cert0, key0);
      t.ConnectTcp(port);
      CHECK(t.ClosedByPeer());
    }
    SUBCASE("a connection silent after the handshake, before Hello, is closed by the same timeout") {
      RawTls t(f.ca, cert0, key0);
      t.ConnectTcp(port);
      REQUIRE(t.Handshake());
      CHECK_FALSE(t.Read().has_value());
      CHECK(LogSays(f.dir.Path("coordinator.log"), "timed out waiting for TLS handshake and Hello"));
    }
    SUBCASE("a registered client that goes silent is closed by the idle timeout") {
      RawTls t(f.ca, cert0, key0);
      t.ConnectTcp(port);
      REQUIRE(t.Handshake());
      REQUIRE(t.Write(HelloFor("device-0")));
      auto reg = t.Read();
      REQUIRE(reg.has_value());
      CHECK(reg->has_register_());
      // Heartbeat requests arrive and go unanswered until the coordinator closes.
      for (auto env = t.Read(); env.has_value(); env = t.Read()) CHECK(env->has_heartbeat());
      CHECK(LogSays(f.dir.Path("coordinator.log"), "idle timeout"));
    }
    SUBCASE("a peer that stops reading is dropped at the write-queue limit and another is still served") {
      RawTls served(f.ca, cert1, key1);
      served.ConnectTcp(port);
      REQUIRE(served.Handshake());
      REQUIRE(served.Write(HelloFor("device-1")));
      REQUIRE(served.Read().has_value());

      RawTls greedy(f.ca, cert0, key0);
      greedy.ConnectTcp(port, /*small_receive_buffer=*/4096);
      REQUIRE(greedy.Handshake());
      REQUIRE(greedy.Write(HelloFor("device-0")));
      // Heartbeat requests, each answered, never read: the answers fill the
      // socket buffers, then the session's queue, which closes it.
      v1::Envelope hb;
      hb.mutable_heartbeat()->set_sequence(1);
      auto one = EncodeEnvelope(hb);
      REQUIRE(one.ok());
      std::vector<uint8_t> batch;
      for (int i = 0; i < 1000; ++i) batch.insert(batch.end(), one->begin(), one->end());
      bool dropped = false;
      for (int i = 0; i < 20000 && !dropped; ++i) {
        dropped = !greedy.WriteBytes(batch);
        if (i % 50 != 0) continue;
        // The served client keeps talking, so its idle timer never fires meanwhile.
        REQUIRE(served.Write(hb));
        if (ReadFile(f.dir.Path("coordinator.log")).find("write queue over 4") != std::string::npos) dropped = true;
      }
      CHECK(dropped);
      CHECK(LogSays(f.dir.Path("coordinator.log"), "write queue over 4 messages (peer not reading)"));
      // The other session is answered as before.
      hb.mutable_heartbeat()->set_sequence(77);
      REQUIRE(served.Write(hb));
      bool answered = false;
      for (int i = 0; i < 100000 && !answered; ++i) {
        auto env = served.Read();
        REQUIRE(env.has_value());
        answered = env->has_heartbeat() && env->heartbeat().reply() && env->heartbeat().sequence() == 77;
      }
      CHECK(answered);
    }
    CHECK_FALSE(coordinator.Wait(0).has_value());
  }

  TEST_CASE("another protocol version and a Hello naming another identity are answered by code") {
    Fixture f;
    Process coordinator(f.CoordinatorArgs({}), f.dir.Path("coordinator.log"));
    const uint16_t port = f.WaitPort(coordinator);
    const std::string cert0 = CaPaths::ClientCert(f.ca_dir, "device-0"), key0 = CaPaths::ClientKey(f.ca_dir, "device-0");
    auto connect = [&] {
      auto t = std::make_unique<RawTls>(f.ca, cert0, key0);
      t->ConnectTcp(port);
      REQUIRE(t->Handshake());
      return t;
    };
    {
      auto t = connect();
      REQUIRE(t->Write(HelloFor("device-0", kProtocolVersion - 1)));
      auto err = t->Read();
      REQUIRE(err.has_value());
      REQUIRE(err->has_error());
      CHECK(err->error().code() == v1::Error::PROTOCOL_VERSION);
      CHECK_FALSE(t->Read().has_value());
    }
    {
      // An Envelope of another version: the session cannot parse it, and says why.
      v1::Envelope hello = HelloFor("device-0");
      hello.set_protocol_version(kProtocolVersion + 1);
      const std::string body = hello.SerializeAsString();
      std::vector<uint8_t> frame;
      REQUIRE(AppendFrame(std::span(reinterpret_cast<const uint8_t*>(body.data()), body.size()), 1 << 20, &frame).ok());
      auto t = connect();
      REQUIRE(t->WriteBytes(frame));
      auto err = t->Read();
      REQUIRE(err.has_value());
      REQUIRE(err->has_error());
      CHECK(err->error().code() == v1::Error::PROTOCOL_VERSION);
    }
    {
      auto t = connect();
      REQUIRE(t->Write(HelloFor("device-1")));  // the certificate says device-0
      auto err = t->Read();
      REQUIRE(err.has_value());
      REQUIRE(err->has_error());
      CHECK(err->error().code() == v1::Error::UNAUTHENTICATED);
      CHECK(err->error().message().find("device-0") != std::string::npos);
    }
  }

  TEST_CASE("a frugal-client whose certificate the coordinator does not trust stops with exit code 4") {
    Fixture f;
    const std::string other = f.dir.Path("other-ca");
    REQUIRE(InitCa(other).ok());
    REQUIRE(IssueClientCert(other, "device-0").ok());
    Process coordinator(f.CoordinatorArgs({}), f.dir.Path("coordinator.log"));
    const uint16_t port = f.WaitPort(coordinator);
    (void)port;
    Process client({FRUGAL_CLIENT_BIN, "-i",
                    "--set", "name=\"device-0\"",
                    "--set", "coordinator.port_file=\"" + f.dir.Path("port") + "\"",
                    "--set", "tls.ca_cert=\"" + f.ca.ca_cert + "\"",
                    "--set", "tls.cert=\"" + CaPaths::ClientCert(other, "device-0") + "\"",
                    "--set", "tls.key=\"" + CaPaths::ClientKey(other, "device-0") + "\"",
                    "--set", "state_dir=\"" + f.dir.Path("state") + "\"",
                    "--set", "data.clients=10",
                    "--set", "connection.backoff_initial_s=0.1",
                    "--set", "connection.max_attempts=50"},
                   f.dir.Path("client.log"));
    const auto code = client.Wait(120);
    INFO(ReadFile(f.dir.Path("client.log")));
    REQUIRE(code.has_value());
    CHECK(*code == 4);
    CHECK(ReadFile(f.dir.Path("client.log")).find("UNAUTHENTICATED") != std::string::npos);
  }

  TEST_CASE("TLS paths that are directories and an unknown model are refused before the store file is created") {
    Fixture f;
    const std::string store = f.dir.Path("coordinator.db");
    const std::string a_dir = f.dir.Path("ca");
    {
      Process c(f.CoordinatorArgs({"service.server_cert=\"" + a_dir + "\""}), f.dir.Path("dir.log"));
      const auto code = c.Wait(60);
      REQUIRE(code.has_value());
      CHECK(*code != 0);
      const std::string log = ReadFile(f.dir.Path("dir.log"));
      CHECK(log.find("'" + a_dir + "' is a directory") != std::string::npos);
      CHECK_FALSE(std::filesystem::exists(store));
    }
    {
      Process c(f.CoordinatorArgs({"model=\"transformer\""}), f.dir.Path("model.log"));
      const auto code = c.Wait(60);
      REQUIRE(code.has_value());
      CHECK(*code != 0);
      CHECK(ReadFile(f.dir.Path("model.log")).find("transformer") != std::string::npos);
      CHECK_FALSE(std::filesystem::exists(store));
    }
    {
      Process c({FRUGAL_CLIENT_BIN, "--set", "name=\"device-0\"", "--set", "coordinator.port=7443",
                 "--set", "tls.ca_cert=\"" + f.ca.ca_cert + "\"", "--set", "tls.cert=\"" + a_dir + "\"",
                 "--set", "tls.key=\"" + CaPaths::ClientKey(f.ca_dir, "device-0") + "\"",
                 "--set", "state_dir=\"" + f.dir.Path("state") + "\"", "--set", "data.clients=10"},
                f.dir.Path("client.log"));
      const auto code = c.Wait(120);
      REQUIRE(code.has_value());
      CHECK(*code == 2);
      CHECK(ReadFile(f.dir.Path("client.log")).find("'" + a_dir + "' is a directory") != std::string::npos);
    }
  }
}

}  // namespace frugal::coordinator
