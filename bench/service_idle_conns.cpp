// Idle mutual-TLS connections one frugal-coordinator holds (issue 6, item 9):
// one process, one Asio thread, many TLS 1.3 streams, each presenting a real
// client certificate (`frugal-coordinator ca issue`), completing the handshake
// and Hello/Register, then idling while answering the coordinator's
// heartbeats. Reads the coordinator's RSS from /proc before and after and its
// /metrics, holds the connections for a while (past the idle timeout, so a
// connection that is not kept alive would be seen to drop), and prints one
// JSON object.
//
//   frugal-service-idle-conns --pid PID --port P --status-port SP --ca CA_CRT
//       --certs DIR (--identities NAME[,NAME...] | --identity-prefix P --identity-count K)
//       --connections N [--in-flight 200] [--settle-s 5] [--hold-s 75]
// Connection i presents identity i mod K; with K = N every connection is its own
// client (`frugal-coordinator ca issue --count N --prefix P` issues them), so the
// coordinator's per-client state (its clients map, the store's clients table)
// grows with the connections too.
#include <signal.h>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <array>
#include <deque>
#include <functional>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "frugal/proto/frame.h"

namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "frugal-service-idle-conns: %s\n", what.c_str());
  std::exit(1);
}

// VmRSS or VmHWM of a process, in bytes.
uint64_t ProcKb(int pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * 1024;
  }
  return 0;
}

double Metric(uint16_t port, const std::string& name) {
  asio::io_context io;
  tcp::socket s(io);
  boost::system::error_code ec;
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return -1;
  const std::string req = "GET /metrics HTTP/1.0\r\n\r\n";
  asio::write(s, asio::buffer(req), ec);
  std::string out;
  char buf[4096];
  for (;;) {
    const size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  const size_t at = out.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(out.substr(at + name.size() + 2));
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

struct Totals {
  size_t started = 0, registered = 0, failed = 0, lost = 0, heartbeats = 0;
  size_t in_flight = 0;
  std::string first_error;
};

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(asio::io_context& io, ssl::context& ctx, std::string name, Totals& totals)
      : stream_(io, ctx), name_(std::move(name)), totals_(totals) {}

  void Start(const tcp::endpoint& ep) {
    ++totals_.started;
    ++totals_.in_flight;
    stream_.lowest_layer().async_connect(ep, [self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return self->Failed("connect: " + ec.message());
      self->stream_.async_handshake(ssl::stream_base::client, [self](const boost::system::error_code& hec) {
        if (hec) return self->Failed("handshake: " + hec.message());
        frugal::v1::Envelope env;
        frugal::v1::Hello* h = env.mutable_hello();
        h->set_protocol_version(frugal::kProtocolVersion);
        h->set_client_name(self->name_);
        h->set_device_class("phone-mid");
        h->set_radio("wifi");
        h->set_region("world");
        h->set_num_examples(100);
        h->set_input_dim(784);
        self->Send(env);
        self->DoRead();
      });
    });
  }
  bool registered() const { return registered_ && open_; }

 private:
  void Failed(const std::string& why) {
    if (!open_) return;
    open_ = false;
    if (registered_) {
      ++totals_.lost;
      --totals_.registered;
    } else {
      ++totals_.failed;
      --totals_.in_flight;
    }
    if (totals_.first_error.empty()) totals_.first_error = name_ + ": " + why;
    boost::system::error_code ignored;
    stream_.lowest_layer().close(ignored);
  }
  void DoRead() {
    stream_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                            size_t n) {
      if (ec) return self->Failed("read: " + ec.message());
      if (!self->decoder_.Feed(std::span(self->buf_.data(), n)).ok()) return self->Failed("bad frame");
      for (;;) {
        auto env = self->decoder_.Next();
        if (!env.ok()) return self->Failed(env.error().message());
        if (!env->has_value()) break;
        self->On(**env);
        if (!self->open_) return;
      }
      self->DoRead();
    });
  }
  void On(const frugal::v1::Envelope& env) {
    switch (env.body_case()) {
      case frugal::v1::Envelope::kRegister:
        registered_ = true;
        ++totals_.registered;
        --totals_.in_flight;
        break;
      case frugal::v1::Envelope::kHeartbeat:
        if (!env.heartbeat().reply()) {
          frugal::v1::Envelope reply;
          reply.mutable_heartbeat()->set_sequence(env.heartbeat().sequence());
          reply.mutable_heartbeat()->set_reply(true);
          Send(reply);
          ++totals_.heartbeats;
        }
        break;
      case frugal::v1::Envelope::kError:
        Failed("coordinator error: " + env.error().message());
        break;
      case frugal::v1::Envelope::kBye:
        Failed("bye: " + env.bye().reason());
        break;
      default:
        break;  // an idle client never gets a task (the bench config never opens a round)
    }
  }
  void Send(const frugal::v1::Envelope& env) {
    auto bytes = frugal::EncodeEnvelope(env);
    if (!bytes.ok()) return Failed("encode");
    queue_.push_back(std::move(*bytes));
    if (!writing_) DoWrite();
  }
  void DoWrite() {
    if (queue_.empty() || !open_) return;
    writing_ = true;
    asio::async_write(stream_, asio::buffer(queue_.front()),
                      [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                        self->writing_ = false;
                        if (ec) return self->Failed("write: " + ec.message());
                        self->queue_.pop_front();
                        self->DoWrite();
                      });
  }

  ssl::stream<tcp::socket> stream_;
  std::string name_;
  Totals& totals_;
  frugal::EnvelopeDecoder decoder_;
  std::array<uint8_t, 1024> buf_{};
  std::deque<std::vector<uint8_t>> queue_;
  bool writing_ = false, registered_ = false, open_ = true;
};

}  // namespace

int main(int argc, char** argv) {
  int pid = 0;
  uint16_t port = 0, status_port = 0;
  std::string ca, certs;
  std::vector<std::string> identities;
  size_t connections = 1000, max_in_flight = 200;
  std::string identity_prefix;
  size_t identity_count = 0;
  double settle_s = 5, hold_s = 75;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--pid") pid = std::stoi(next());
    else if (a == "--port") port = static_cast<uint16_t>(std::stoul(next()));
    else if (a == "--status-port") status_port = static_cast<uint16_t>(std::stoul(next()));
    else if (a == "--ca") ca = next();
    else if (a == "--certs") certs = next();
    else if (a == "--identities") {
      std::stringstream ss(next());
      for (std::string n; std::getline(ss, n, ',');) identities.push_back(n);
    } else if (a == "--identity-prefix") identity_prefix = next();
    else if (a == "--identity-count") identity_count = std::stoul(next());
    else if (a == "--connections") connections = std::stoul(next());
    else if (a == "--in-flight") max_in_flight = std::stoul(next());
    else if (a == "--settle-s") settle_s = std::stod(next());
    else if (a == "--hold-s") hold_s = std::stod(next());
    else Die("unknown argument " + a);
  }
  for (size_t k = 0; k < identity_count; ++k) identities.push_back(identity_prefix + std::to_string(k));
  if (pid <= 0 || port == 0 || status_port == 0 || ca.empty() || certs.empty() || identities.empty()) {
    Die("--pid, --port, --status-port, --ca, --certs and --identities (or --identity-count) are required");
  }
  ::signal(SIGPIPE, SIG_IGN);
  frugal::SilenceProtobufLogs();

  asio::io_context io(1);
  // One TLS context per identity (certificate + key), shared by its connections.
  std::vector<std::unique_ptr<ssl::context>> ctxs;
  for (const std::string& n : identities) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_3_VERSION);
    ctx->load_verify_file(ca);
    ctx->use_certificate_chain_file(certs + "/" + n + ".crt");
    ctx->use_private_key_file(certs + "/" + n + ".key", ssl::context::pem);
    ctx->set_verify_mode(ssl::verify_peer);
    ctxs.push_back(std::move(ctx));
  }
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);

  std::fprintf(stderr, "%zu identities loaded\n", ctxs.size());

  const uint64_t rss_before = ProcKb(pid, "VmRSS");
  const double sessions_before = Metric(status_port, "frugal_sessions");
  Totals totals;
  std::vector<std::shared_ptr<Conn>> conns;
  conns.reserve(connections);
  const auto t0 = Clock::now();
  double ramp_s = 0;
  uint64_t rss_after = 0, hwm_after = 0;
  double sessions_after = -1;
  nlohmann::json out;

  asio::steady_timer timer(io);
  enum class Phase { kRamp, kSettle, kHold } phase = Phase::kRamp;
  std::function<void()> tick = [&]() {
    if (phase == Phase::kRamp) {
      while (conns.size() < connections && totals.in_flight < max_in_flight) {
        const size_t i = conns.size();
        auto c = std::make_shared<Conn>(io, *ctxs[i % ctxs.size()], identities[i % identities.size()], totals);
        conns.push_back(c);
        c->Start(ep);
      }
      if (conns.size() == connections && totals.in_flight == 0) {
        ramp_s = std::chrono::duration<double>(Clock::now() - t0).count();
        std::fprintf(stderr, "%zu connections: %zu registered, %zu failed in %.1f s\n", connections,
                     totals.registered, totals.failed, ramp_s);
        phase = Phase::kSettle;
        timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(settle_s * 1000)));
        timer.async_wait([&](const boost::system::error_code&) { tick(); });
        return;
      }
      timer.expires_after(std::chrono::milliseconds(5));
      timer.async_wait([&](const boost::system::error_code&) { tick(); });
    } else if (phase == Phase::kSettle) {
      rss_after = ProcKb(pid, "VmRSS");
      hwm_after = ProcKb(pid, "VmHWM");
      sessions_after = Metric(status_port, "frugal_sessions");
      std::fprintf(stderr, "coordinator RSS %.1f MiB (before: %.1f MiB), %g sessions; holding %.0f s\n",
                   rss_after / 1048576.0, rss_before / 1048576.0, sessions_after, hold_s);
      phase = Phase::kHold;
      timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(hold_s * 1000)));
      timer.async_wait([&](const boost::system::error_code&) { tick(); });
    } else {
      size_t alive = 0;
      for (const auto& c : conns) alive += c->registered() ? 1 : 0;
      const uint64_t rss_end = ProcKb(pid, "VmRSS");
      const double delta = static_cast<double>(rss_after) - static_cast<double>(rss_before);
      out = {{"bench", "idle_mtls_connections"},
             {"connections", connections},
             {"identities", identities.size()},
             {"distinct_identities_connected", std::min(connections, identities.size())},
             {"registered", totals.registered + totals.lost},
             {"failed", totals.failed},
             {"first_error", totals.first_error},
             {"ramp_seconds", ramp_s},
             {"coordinator_sessions_before", sessions_before},
             {"coordinator_sessions", sessions_after},
             {"rss_before_bytes", rss_before},
             {"rss_after_bytes", rss_after},
             {"vmhwm_after_bytes", hwm_after},
             {"bytes_per_connection", connections > 0 ? delta / static_cast<double>(connections) : 0},
             {"hold_seconds", hold_s},
             {"heartbeats_answered", totals.heartbeats},
             {"alive_after_hold", alive},
             {"lost_during_hold", totals.lost},
             {"rss_after_hold_bytes", rss_end},
             {"load_average", LoadAverage()}};
      io.stop();
    }
  };
  tick();
  io.run();
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
