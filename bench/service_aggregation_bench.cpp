// Aggregation latency of the coordinator (issue 6, item 9): a round of N
// sparse updates of the 2NN (real local training on Fashion-MNIST, 1% top-k
// ternary uplink, as frugal-client sends them), aggregated as they arrive.
// Times, per round, the close from the last accepted update to the new model
// version: (1) RoundEngine alone (Ingest as updates arrive, then CloseRound),
// (2) the coordinator's RoundDriver, where the last OnUpdate also evaluates the
// new model, commits the round to SQLite and rewrites the run directory.
// One JSON object per line.
//
//   frugal-service-aggregation-bench [--clients N] [--rounds R] [--density D]
//                                    [--eval-examples E] [--dir DIR] [--random]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "frugal/coordinator/config.h"
#include "frugal/coordinator/round_driver.h"
#include "frugal/coordinator/store.h"
#include "frugal/core/random.h"
#include "frugal/data/dataset.h"
#include "frugal/data/partition.h"
#include "frugal/energy/profiles.h"
#include "frugal/model/model.h"
#include "frugal/proto/frame.h"
#include "frugal/round/client_task.h"
#include "frugal/round/engine.h"

namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "frugal-service-aggregation-bench: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T Must(frugal::Result<T> r, const char* what) {
  if (!r.ok()) Die(std::string(what) + ": " + r.error().message());
  return std::move(*r);
}

struct Stats {
  double median = 0, p90 = 0, max = 0, mean = 0;
};
Stats Summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v[v.size() / 2];
  s.p90 = v[std::min(v.size() - 1, v.size() * 9 / 10)];
  s.max = v.back();
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  return s;
}
nlohmann::json ToJson(const Stats& s) {
  return {{"median_ms", s.median}, {"p90_ms", s.p90}, {"max_ms", s.max}, {"mean_ms", s.mean}};
}

// Discards what the driver sends (1,000 model payloads per round), counting bytes.
class NullTransport : public frugal::coordinator::DriverTransport {
 public:
  void Send(uint64_t, const frugal::v1::Envelope& env) override { bytes += env.ByteSizeLong(); }
  uint64_t bytes = 0;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace frugal;
  uint32_t clients = 1000, rounds = 5;
  double density = 0.01;
  uint32_t eval_examples = 0;  // 0: the whole test set, as the coordinator's default
  std::string dir = std::filesystem::temp_directory_path() / "frugal-aggregation-bench";
  bool random_updates = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--clients") clients = static_cast<uint32_t>(std::stoul(next()));
    else if (a == "--rounds") rounds = static_cast<uint32_t>(std::stoul(next()));
    else if (a == "--density") density = std::stod(next());
    else if (a == "--eval-examples") eval_examples = static_cast<uint32_t>(std::stoul(next()));
    else if (a == "--dir") dir = next();
    else if (a == "--random") random_updates = true;
    else Die("unknown argument " + a);
  }

  // The coordinator's own configuration path, so the engine is configured as in a deployment.
  const std::vector<std::string> sets = {
      "run_id=\"aggregation-bench\"", "model=\"mlp\"", "pipeline=\"frugal\"", "rounds=" + std::to_string(rounds),
      "round.clients_per_round=" + std::to_string(clients), "round.min_clients=" + std::to_string(clients),
      "round.deadline_s=100000", "uplink.density=" + std::to_string(density), "uplink.values=\"ternary\"",
      "eval.examples=" + std::to_string(eval_examples)};
  coordinator::CoordinatorConfig cfg = Must(coordinator::ParseCoordinatorConfig("", "bench", sets), "config");

  const Dataset test = Must(LoadFashionMnist(Split::kTest), "Fashion-MNIST test set");
  auto model = Must(MakeModel("mlp", test.num_features, test.num_classes), "model");
  auto ws = model->MakeWorkspace();
  std::vector<float> init(model->num_params());
  model->InitParams(init, 1);
  const size_t dim = init.size();

  // The N updates: each client's real local training from the initial model
  // (IID shares of the training set), or seeded N(0, 0.01^2) vectors, through
  // the real uplink encoder.
  const auto t_make = Clock::now();
  std::vector<std::vector<uint8_t>> updates(clients);
  std::vector<double> weights(clients, 1.0);
  if (random_updates) {
    std::vector<float> v(dim);
    for (uint32_t c = 0; c < clients; ++c) {
      Rng rng(DeriveSeed(7, c));
      for (float& x : v) x = static_cast<float>(0.01 * rng.Normal());
      updates[c] = Must(EncodeUplink(v, cfg.task.uplink, {}), "encode");
    }
  } else {
    const Dataset train = Must(LoadFashionMnist(Split::kTrain), "Fashion-MNIST training set");
    const Partition part = Must(PartitionIid(train.size(), clients, 1), "partition");
    std::vector<float> scratch;
    for (uint32_t c = 0; c < clients; ++c) {
      TrainConfig tc = cfg.task.train;
      tc.seed = DeriveSeed(12, c);
      auto r = Must(RunClientTask(*model, init, train, part[c], tc, cfg.task.uplink, {}, *ws, scratch), "train");
      updates[c] = std::move(r.update);
      weights[c] = static_cast<double>(part[c].size());
    }
  }
  size_t update_bytes = 0;
  for (const auto& u : updates) update_bytes += u.size();
  std::printf("%s\n", nlohmann::json{{"bench", "updates"},
                                     {"clients", clients},
                                     {"dim", dim},
                                     {"density", density},
                                     {"source", random_updates ? "seeded N(0,0.01^2)" : "local SGD on Fashion-MNIST"},
                                     {"mean_update_bytes", static_cast<double>(update_bytes) / clients},
                                     {"seconds_to_make", Ms(t_make, Clock::now()) / 1000}}
                          .dump()
                          .c_str());

  // (1) The round engine alone.
  {
    std::vector<double> close_ms, ingest_ms;
    std::vector<uint64_t> ids(clients);
    for (uint32_t c = 0; c < clients; ++c) ids[c] = c + 1;
    RoundEngine engine(init, cfg.engine);
    for (uint32_t r = 1; r <= rounds; ++r) {
      if (Status st = engine.OpenRound(r, ids); !st.ok()) Die(st.error().message());
      for (uint32_t c = 0; c < clients; ++c) {
        const auto t0 = Clock::now();
        if (Status st = engine.Ingest(r, ids[c], engine.version(), updates[c], weights[c]); !st.ok()) {
          Die("ingest: " + st.error().message());
        }
        ingest_ms.push_back(Ms(t0, Clock::now()));
      }
      const auto t0 = Clock::now();
      const RoundOutcome out = Must(engine.CloseRound(1), "close");
      close_ms.push_back(Ms(t0, Clock::now()));
      if (!out.applied || out.accepted != clients) Die("round not applied");
    }
    std::printf("%s\n", nlohmann::json{{"bench", "engine_close"},
                                       {"what", "last Ingest returned -> RoundEngine::CloseRound returned (new version)"},
                                       {"rounds", rounds},
                                       {"close", ToJson(Summarize(close_ms))},
                                       {"ingest_per_update", ToJson(Summarize(ingest_ms))}}
                            .dump()
                            .c_str());
  }

  // (2) The coordinator's round driver with its SQLite store and run directory.
  {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    auto store = Must(coordinator::Store::Open(dir + "/coordinator.db"), "store");
    cfg.service.out_dir = dir + "/run";
    NullTransport transport;
    coordinator::DriverDeps deps;
    deps.store = store.get();
    deps.test = &test;
    deps.profiles = Must(EnergyProfiles::LoadDefault(), "profiles");
    deps.transport = &transport;
    auto driver = Must(coordinator::RoundDriver::Create(cfg, std::move(deps)), "driver");
    for (uint32_t c = 0; c < clients; ++c) {
      v1::Hello h;
      h.set_protocol_version(kProtocolVersion);
      std::string name = "client-";  // (not "c" + to_string: g++ 12 warns falsely, -Wrestrict)
      name += std::to_string(c);
      h.set_client_name(name);
      h.set_device_class("phone-mid");
      h.set_radio("wifi");
      h.set_region("world");
      h.set_num_examples(static_cast<uint64_t>(weights[c]));
      h.set_input_dim(static_cast<uint32_t>(test.num_features));
      Must(driver->OnHello(c + 1, h.client_name(), h, 0), "hello");
    }
    std::vector<double> last_ms, other_ms;
    double now = 1;
    for (uint32_t r = 1; r <= rounds; ++r) {
      driver->Tick(now);
      if (!driver->Metrics().round_open) Die("round did not open");
      const uint32_t base = driver->version();
      for (uint32_t c = 0; c < clients; ++c) {
        v1::Update u;
        u.set_round(r);
        u.set_base_version(base);
        u.set_update(reinterpret_cast<const char*>(updates[c].data()), updates[c].size());
        u.mutable_ledger()->set_flops(1e6);
        const auto t0 = Clock::now();
        driver->OnUpdate(c + 1, u, now);
        (c + 1 == clients ? last_ms : other_ms).push_back(Ms(t0, Clock::now()));
      }
      if (driver->fatal()) Die(driver->fatal()->message());
      if (driver->version() != base + 1) Die("no new version after the last update");
      now += 1;
    }
    // Evaluation alone, for the breakdown.
    std::vector<uint32_t> idx(eval_examples == 0 ? test.size() : std::min<size_t>(eval_examples, test.size()));
    for (uint32_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::vector<double> eval_ms;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = Clock::now();
      Must(Evaluate(*model, driver->global_model(), test, idx, *ws), "evaluate");
      eval_ms.push_back(Ms(t0, Clock::now()));
    }
    std::printf("%s\n",
                nlohmann::json{{"bench", "driver_close"},
                               {"what", "last OnUpdate returned: CloseRound + evaluation + SQLite commit + run directory"},
                               {"rounds", rounds},
                               {"eval_examples", idx.size()},
                               {"store", store->path()},
                               {"close", ToJson(Summarize(last_ms))},
                               {"on_update_other", ToJson(Summarize(other_ms))},
                               {"evaluation_alone", ToJson(Summarize(eval_ms))}}
                    .dump()
                    .c_str());
  }
  return 0;
}
