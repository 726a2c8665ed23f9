#include "frugal/coordinator/server.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <thread>

#include "frugal/coordinator/round_driver.h"
#include "frugal/coordinator/store.h"
#include "frugal/model/model.h"
#include "frugal/proto/frame.h"
#include "listener.h"
#include "session_manager.h"
#include "status_http.h"
#include "tls_context.h"

namespace frugal::coordinator {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

Status WritePortFile(const std::string& path, uint16_t port) {
  if (path.empty()) return OkStatus();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << '\n';
    if (!out) return UnavailableError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return UnavailableError("cannot rename " + tmp + " to " + path);
  return OkStatus();
}

// The running service: the I/O loop, its listeners, the driver's clock, the
// close worker, and the orderly shutdown (Bye to every client, then stop) on
// a signal, at the end of the run or on a fatal driver error.
//
// Threads: every session, the status port, the timers and the RoundDriver
// run on the one I/O thread (io_). A round's close work (aggregation, the
// trusted-set work, evaluation, distillation) runs on close_worker_, one
// thread, and its result is posted back to io_, where the driver commits and
// announces the round; meanwhile io_ keeps serving.
class Service {
 public:
  explicit Service(const CoordinatorConfig& config) : config_(config), manager_(config) {}

  // Everything that can fail on bad configuration is checked before the
  // store file is created: TLS files, the test set, profiles, the model, ports.
  Status Open();
  // Serves until the run completes or a signal arrives; the driver's fatal error, if any.
  Status Serve();

 private:
  void Shutdown(const std::string& reason);
  void StopWhenDrained(Clock::time_point give_up);
  void ArmTick();
  void OnTick();
  // DriverDeps::run_close: `work` on close_worker_, then `apply` posted back to io_.
  void RunClose(uint32_t round, std::function<void()> work, std::function<void()> apply);

  const CoordinatorConfig& config_;
  asio::io_context io_{1};
  SessionManager manager_;
  std::unique_ptr<asio::ssl::context> ctx_;
  Dataset test_;
  Dataset train_;  // loaded only when server.robust = "fltrust" (its trusted set)
  std::unique_ptr<Store> store_;
  std::unique_ptr<RoundDriver> driver_;
  std::optional<tcp::acceptor> acceptor_, status_acceptor_;
  std::shared_ptr<Listener> listener_;
  std::shared_ptr<StatusServer> status_;
  std::string status_token_;  // service.status_token_file's token, or "" (loopback, no token)
  asio::steady_timer tick_{io_};
  asio::steady_timer grace_{io_};
  double next_heartbeat_ = 0;
  bool finishing_ = false;
  // A shutdown asked for while a close is in flight: it waits for the close
  // to be committed, as it did when the close held the I/O thread.
  std::optional<std::string> pending_shutdown_;
  std::optional<Error> result_;
  // Declared last, so it is joined (its running work finished) before the
  // driver and the data that work uses are destroyed.
  asio::thread_pool close_worker_{1};
};

Status Service::Open() {
  const ServiceConfig& s = config_.service;
  FRUGAL_ASSIGN_OR_RETURN(ctx_, MakeServerContext(s));
  const std::string dir = config_.data_dir.empty() ? std::string(FRUGAL_FMNIST_DIR) : config_.data_dir;
  FRUGAL_ASSIGN_OR_RETURN(test_, LoadFashionMnist(Split::kTest, dir));
  DriverDeps deps;
  FRUGAL_ASSIGN_OR_RETURN(deps.profiles, s.profiles.empty() ? EnergyProfiles::LoadDefault()
                                                            : EnergyProfiles::LoadDefaultWithOverride(s.profiles));
  FRUGAL_RETURN_IF_ERROR(MakeModel(config_.model, test_.num_features, test_.num_classes).status());
  FRUGAL_ASSIGN_OR_RETURN(acceptor_, Bind(io_, s.listen_address, s.port, "clients"));
  FRUGAL_ASSIGN_OR_RETURN(status_token_, LoadStatusToken(s));
  FRUGAL_ASSIGN_OR_RETURN(status_acceptor_, Bind(io_, s.status_address, s.status_port, "status"));
  FRUGAL_ASSIGN_OR_RETURN(store_, Store::Open(s.store));
  deps.store = store_.get();
  deps.test = &test_;
  // The training set: FLTrust's trusted set, distillation's unlabeled pool.
  if (config_.engine.robust.rule == RobustRule::kFlTrust || config_.trigger_scan.every > 0 || config_.distill.at_end) {
    FRUGAL_ASSIGN_OR_RETURN(train_, LoadFashionMnist(Split::kTrain, dir));
    deps.train = &train_;
  }
  deps.transport = &manager_;
  deps.wire_totals = [this] { return WireTotals{manager_.tcp_bytes_in, manager_.tcp_bytes_out}; };
  deps.run_close = [this](uint32_t round, std::function<void()> work, std::function<void()> apply) {
    RunClose(round, std::move(work), std::move(apply));
  };
  FRUGAL_ASSIGN_OR_RETURN(driver_, RoundDriver::Create(config_, std::move(deps)));
  manager_.set_driver(driver_.get());
  return OkStatus();
}

Status Service::Serve() {
  const ServiceConfig& s = config_.service;
  const uint16_t port = acceptor_->local_endpoint().port();
  const uint16_t status_port = status_acceptor_->local_endpoint().port();
  listener_ = std::make_shared<Listener>(io_, std::move(*acceptor_), ctx_->native_handle(), manager_);
  status_ = std::make_shared<StatusServer>(std::move(*status_acceptor_), manager_, status_token_);
  listener_->Start();
  status_->Start();
  FRUGAL_RETURN_IF_ERROR(WritePortFile(s.port_file, port));
  FRUGAL_RETURN_IF_ERROR(WritePortFile(s.status_port_file, status_port));
  spdlog::info("frugal-coordinator: run {} on {}:{} (mutual TLS 1.3), status on http://{}:{}/status", config_.run_id,
               s.listen_address, port, s.status_address, status_port);
  spdlog::info("dashboard: http://{}:{}/{}", s.status_address.find(':') != std::string::npos ? "[" + s.status_address + "]" : s.status_address,
               status_port, status_token_.empty() ? "" : " (add ?access_token=TOKEN, the token of service.status_token_file)");

  asio::signal_set signals(io_, SIGINT, SIGTERM);
  signals.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: stopping", sig);
    Shutdown("coordinator stopping");
  });
  next_heartbeat_ = s.heartbeat_s;
  ArmTick();
  io_.run();
  close_worker_.join();  // a close still running when the loop stopped is finished and dropped, never applied
  if (result_) return *result_;
  return OkStatus();
}

void Service::RunClose(uint32_t round, std::function<void()> work, std::function<void()> apply) {
  asio::post(close_worker_, [this, round, work = std::move(work), apply = std::move(apply)]() mutable {
    if (round == config_.service.debug_hold_close_round && !config_.service.out_dir.empty()) {
      // Tests only (service.debug_hold_close_round): hold the close until the test removes the file.
      const std::filesystem::path hold = std::filesystem::path(config_.service.out_dir) /
                                         ("close_hold_r" + std::to_string(round));
      std::error_code ec;
      std::filesystem::create_directories(hold.parent_path(), ec);
      std::ofstream(hold) << "held\n";
      spdlog::info("round {}: close held until {} is removed (service.debug_hold_close_round)", round, hold.string());
      while (std::filesystem::exists(hold, ec)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    work();
    asio::post(io_, [this, apply = std::move(apply)] {
      apply();
      if (finishing_ || driver_->fatal()) return;  // a fatal error: the next OnTick reports it and stops
      if (pending_shutdown_) {
        Shutdown(*pending_shutdown_);
        return;
      }
      // The next round may open now rather than at the next tick.
      driver_->Tick(manager_.Now());
    });
  });
}

void Service::Shutdown(const std::string& reason) {
  if (finishing_) return;
  if (driver_->closing()) {
    // The close in flight is committed first (RunClose's apply then shuts down).
    if (!pending_shutdown_) spdlog::info("stopping once round {} is committed", driver_->Metrics().round);
    pending_shutdown_ = reason;
    return;
  }
  finishing_ = true;
  manager_.BeginShutdown();
  listener_->Stop();
  manager_.ByeAll(reason);
  // Each session closes once its Bye is written; stop when all have, or
  // after a grace period for peers that do not read.
  StopWhenDrained(Clock::now() + std::chrono::milliseconds(500));
}

void Service::StopWhenDrained(Clock::time_point give_up) {
  if (manager_.size() > 0 && Clock::now() < give_up) {
    grace_.expires_after(std::chrono::milliseconds(10));
    grace_.async_wait([this, give_up](const boost::system::error_code&) { StopWhenDrained(give_up); });
    return;
  }
  manager_.StopAll();
  status_->Stop();
  io_.stop();
}

// The clock of the round driver: deadlines, round openings, heartbeats.
void Service::ArmTick() {
  tick_.expires_after(std::chrono::milliseconds(100));
  tick_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || finishing_) return;
    OnTick();
  });
}

void Service::OnTick() {
  const double now = manager_.Now();
  driver_->Tick(now);
  if (driver_->fatal()) {
    spdlog::error("stopping: {}", driver_->fatal()->message());
    result_ = *driver_->fatal();
    Shutdown("coordinator error");
    return;
  }
  if (driver_->finished()) {
    spdlog::info("run {} complete: {} rounds; run directory {}", config_.run_id, config_.rounds,
                 config_.service.out_dir);
    Shutdown("run complete");
    return;
  }
  if (now >= next_heartbeat_) {
    manager_.HeartbeatAll();
    next_heartbeat_ = now + config_.service.heartbeat_s;
  }
  ArmTick();
}

}  // namespace

Status RunCoordinator(const CoordinatorConfig& config) {
  SilenceProtobufLogs();
  // OpenSSL writes to the sockets itself: a peer that vanished must give EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  Service service(config);
  FRUGAL_RETURN_IF_ERROR(service.Open());
  return service.Serve();
}

}  // namespace frugal::coordinator
