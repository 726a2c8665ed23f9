// The agent's protocol, I/O-free: it takes the Envelopes a session decoded
// and returns the Envelopes to send and what to do next. Training, encoding
// and evaluation run here (they are computation); the socket, the clock and
// the device's power and network state are the caller's, so tests drive the
// loop with hand-made Envelopes (Asio's request_parser, Beast's test::stream).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "frugal/client/config.h"
#include "frugal/client/device_policy.h"
#include "frugal/client/embed.h"
#include "frugal/client/local_state.h"
#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/energy/battery.h"
#include "frugal/energy/meter.h"
#include "frugal/energy/profiles.h"
#include "frugal/privacy/noise.h"
#include "frugal/privacy/secure_aggregation.h"
#include "frugal/proto/convert.h"
#include "frugal/proto/frugal.pb.h"
#include "frugal/round/client_task.h"

namespace frugal::client {

// The local data and the example indices this client trains on.
struct LocalData {
  Dataset data;
  std::vector<uint32_t> indices;  // the examples trained on
  std::vector<uint32_t> holdout;  // data.holdout's share, evaluated instead of `indices` when not empty
};

// The world as the task loop sees it. Pointers are borrowed and outlive the loop.
struct TaskLoopEnv {
  const ClientConfig* config = nullptr;
  const LocalData* local = nullptr;
  const DeviceProfile* device = nullptr;
  const RadioProfile* radio = nullptr;
  EnergyMeter* meter = nullptr;             // RAPL, or none
  PhaseMeter* phases = nullptr;             // the battery's fuel gauge, or none (held from a Task to its Update)
  std::function<PolicyDecision()> decide;   // the device policy now (battery, network)
  embed::Trainer* app = nullptr;            // an embedding app trains and evaluates instead of the core's trainer
  // Seconds of CPU used by the calling thread (the secure pipeline's protocol
  // work is priced from it); none: the protocol's CPU is not reported.
  std::function<double()> cpu_seconds;
  // Distributed DP: the key of this client's noise in one secure round, which
  // nobody else may know. None: 32 bytes from OpenSSL's RAND_bytes (the
  // agent's default); a test may inject a known key to check the noise.
  std::function<Result<privacy::NoiseKey>()> noise_key;
  // The client's identity for a secure round that binds keys to identities
  // (the agent loads its CA certificate, key and credential files); none: such
  // a round, or config->require_identity, is refused.
  std::function<Result<privacy::SecureIdentity>()> identity;
};

// What the session does after an Envelope.
struct LoopDecision {
  enum class Kind {
    kContinue,   // read on
    kReconnect,  // close; connect again after the backoff
    kStop,       // close and return from Agent::Run
  };
  Kind kind = Kind::kContinue;
  // kReconnect: why, and the attempt counts as a failure (nullopt: the session
  // served and ended, the backoff starts over). kStop: why the client must not
  // retry, its code through the wire's table (PROTOCOL_VERSION is
  // kFailedPrecondition); nullopt: the run is complete.
  std::optional<Error> error;

  static LoopDecision Continue() { return {}; }
  static LoopDecision Reconnect(std::optional<Error> e = std::nullopt) { return {Kind::kReconnect, std::move(e)}; }
  static LoopDecision Stop(std::optional<Error> e = std::nullopt) { return {Kind::kStop, std::move(e)}; }
};

struct LoopStep {
  std::vector<v1::Envelope> send;  // in order, before acting on the decision
  LoopDecision decision;
};

// One session's protocol (a new loop per connection; `state` outlives them).
// Policy on the coordinator's Error codes: PROTOCOL_VERSION, UNAUTHENTICATED
// and PERMISSION_DENIED stop the client; UNAVAILABLE and RESOURCE_EXHAUSTED
// reconnect with backoff; anything else about a registered client's update
// (FAILED_PRECONDITION: stale or duplicate, INVALID_ARGUMENT) is logged and
// the client keeps serving. Not thread-safe.
class TaskLoop {
 public:
  TaskLoop(const TaskLoopEnv& env, LocalState& state) : env_(env), state_(state) {}
  ~TaskLoop();  // releases the phase meter

  // The Hello that opens the session (announces the version held).
  v1::Envelope Hello() const;
  LoopStep OnEnvelope(const v1::Envelope& env);
  // The stream could not be decoded; `foreign_version` is set when it was an
  // Envelope of another protocol version (then the client stops).
  LoopDecision OnDecodeError(const Error& e, std::optional<uint32_t> foreign_version) const;
  // The connection failed or ended. kUnauthenticated (the coordinator's TLS
  // refused this certificate) stops; anything else reconnects.
  LoopDecision OnConnectionLost(const Error& e) const;
  bool registered() const { return registered_; }

 private:
  LoopStep OnRegister(const v1::Register& reg);
  LoopStep OnModel(const v1::ModelPayload& payload);
  LoopStep OnError(const v1::Error& e) const;
  // Secure pipeline: the task's SecAgg+ client answers each stage; the
  // payload is applied with the task, the training runs when the share inbox
  // (stage 3) arrives.
  LoopStep StartSecure(const v1::Task& task, const v1::ModelPayload& payload);
  LoopStep OnSecAgg(const v1::SecAgg& msg);
  Result<v1::SecAgg> SecureMaskedInput(std::span<const uint8_t> share_inbox);
  v1::EvalResult DoEval(const v1::EvalTask& task, const v1::ModelPayload& payload);
  Result<v1::Update> DoTask(const v1::Task& task, const v1::ModelPayload& payload);
  // The embedding app's training, then the same encoding as RunClientTask.
  Result<ClientTaskResult> RunAppTask(const v1::Task& task, const TrainConfig& tc, const UplinkConfig& uc,
                                      std::span<float> residual);
  // What the meters saw of a task: the measured training joules (battery
  // gauge, else RAPL) and who measured them, and every phase the gauge saw.
  struct TaskEnergy {
    std::optional<double> measured_j;
    std::string meter;
    std::vector<PhaseEnergy> phases;
  };
  v1::Update UpdateMessage(const v1::Task& task, const ClientTaskResult& result, const TaskEnergy& energy) const;
  void HoldPhases(bool active);

  const TaskLoopEnv& env_;
  LocalState& state_;
  bool registered_ = false;
  // The run's task configuration, from Register: every task asks the same, only its seed differs.
  struct TaskSettings {
    TrainConfig train;
    UplinkConfig uplink;
    bool error_feedback = false;
    uint64_t run_seed = 0;   // Register.seed
    uint64_t client_id = 0;  // Register.client_id
    double width = 1;        // Register.width: < 1 trains the nested sub-network ([widths])
    bool rolling = false;    // Register.rolling_width: the sub-network is the Task round's rolling window
  };
  std::optional<TaskSettings> task_settings_;
  std::optional<v1::Task> pending_task_;
  std::optional<v1::EvalTask> pending_eval_;
  std::optional<double> task_arrived_s_;  // on env_.phases' clock
  // The open secure task: the payload is applied at once, the training waits for stage 3.
  struct SecureTask {
    v1::Task task;
    SecureTaskPlan plan;
    privacy::SecureAggClient client;
    double cpu_s = 0;  // protocol CPU so far (env_.cpu_seconds)
  };
  std::optional<SecureTask> secure_;
};

}  // namespace frugal::client
