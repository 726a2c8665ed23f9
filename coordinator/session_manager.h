// The sessions of the coordinator: owns them, is the round driver's transport
// (Send by connection id), says Bye to or stops them all, sends heartbeats,
// and keeps the wire's counters for /metrics. Private to coordinator/; every
// call runs on the one I/O thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "frugal/coordinator/config.h"
#include "frugal/coordinator/round_driver.h"

namespace frugal::coordinator {

class Session;

class SessionManager : public DriverTransport {
 public:
  explicit SessionManager(const CoordinatorConfig& config);
  ~SessionManager() override;

  void Add(std::shared_ptr<Session> s);
  // Forgets a closed session and tells the driver (unless shutting down).
  void Remove(uint64_t conn_id);
  // From now on closing sessions are not reported to the driver, so a
  // shutdown never closes (and commits) a half-finished round.
  void BeginShutdown() { stopping_ = true; }
  void StopAll();
  // Sends Bye to every session and closes each once it is written.
  void ByeAll(const std::string& reason);
  void HeartbeatAll();
  size_t size() const { return sessions_.size(); }

  // DriverTransport: queues `env` on the session of `conn`, if it is still open.
  void Send(uint64_t conn, const v1::Envelope& env) override;
  void SendTogether(uint64_t conn, std::span<const v1::Envelope> envs) override;

  // Seconds since the manager was created: the round driver's clock.
  double Now() const;
  bool Revoked(const std::string& identity) const;

  // Dashboard bookkeeping by client identity: a registered session read
  // bytes now; `mid_frame` when a frame (an update) is still arriving.
  void Seen(const std::string& identity, bool mid_frame);
  // Seconds since `identity` last sent bytes to this process; nullopt: never.
  std::optional<double> SecondsSinceSeen(const std::string& identity) const;
  // A connected session of `identity` is part-way through a frame.
  bool Receiving(const std::string& identity) const;
  // The driver's dashboard view with the transport's part added: last seen,
  // and "uploading" for a training client whose update is arriving.
  DashboardView Dashboard() const;

  const CoordinatorConfig& config() const { return config_; }
  RoundDriver& driver() const { return *driver_; }
  void set_driver(RoundDriver* driver) { driver_ = driver; }

  // Counters of the wire, for /metrics: TLS plaintext (frames), and TCP
  // payload (TLS records, handshakes and alerts included) as OpenSSL's socket
  // BIOs counted them.
  uint64_t wire_bytes_in = 0, wire_bytes_out = 0;
  uint64_t tcp_bytes_in = 0, tcp_bytes_out = 0;
  uint64_t connections_refused = 0, connections_closed_on_error = 0, handshakes_failed = 0;
  // Sessions beyond the cap that are being told so; bounded so that a flood
  // beyond the cap costs at most this many handshakes at a time.
  static constexpr size_t kMaxRefusing = 64;
  size_t refusing = 0;
  // Plaintext read buffer shared by every session: all run on the one I/O
  // thread and drain it synchronously, so no idle session holds a buffer.
  std::array<uint8_t, 64 * 1024> read_buffer;

 private:
  const CoordinatorConfig& config_;
  RoundDriver* driver_ = nullptr;
  std::map<uint64_t, std::shared_ptr<Session>> sessions_;
  uint64_t heartbeat_seq_ = 0;
  struct Presence {
    double last_seen = 0;
    bool mid_frame = false;
  };
  std::map<std::string, Presence> presence_;  // by identity: one per client certificate seen
  bool stopping_ = false;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace frugal::coordinator
