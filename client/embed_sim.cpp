// frugal_embed_simulate (frugal/client/frugal_embed.h): the simulator with an
// app's own trainer for every client, through the simulator's app-trainer hook
// (frugal::sim::RunOptions::app_train). A library of its own, so that the
// agent (frugal_client) does not carry the simulator.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "frugal/client/frugal_embed.h"
#include "frugal/sim/config.h"
#include "frugal/sim/runner.h"

namespace {

void CopyError(const std::string& message, char* error, size_t error_len) {
  if (error == nullptr || error_len == 0) return;
  const size_t n = std::min(message.size(), error_len - 1);
  std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

// The client's rows as the C trainer sees them, then its callback.
frugal::Result<frugal::TrainStats> TrainWithApp(const frugal_sim_trainer& t, const frugal::sim::AppTrainInput& in,
                                                std::span<float> params) {
  const frugal::Dataset& data = *in.data;
  const size_t dim = data.num_features;
  std::vector<float> features(in.examples.size() * dim);
  std::vector<int32_t> labels(in.examples.size());
  for (size_t k = 0; k < in.examples.size(); ++k) {
    data.CopyRow(in.examples[k], features.data() + k * dim);
    labels[k] = data.labels[in.examples[k]];
  }
  const frugal_client_data cd{in.client, in.examples.size(), dim, features.data(), labels.data()};
  const frugal_train_request req{in.round, in.train->seed, static_cast<uint32_t>(in.train->epochs),
                                 static_cast<uint32_t>(in.train->batch_size), in.train->learning_rate};
  frugal_train_report rep{};
  if (int rc = t.train(t.user, &cd, params.data(), params.size(), &req, &rep); rc != 0) {
    return frugal::UnavailableError("the app's train callback returned " + std::to_string(rc) + " for client " +
                                    std::to_string(in.client));
  }
  frugal::TrainStats stats;
  stats.examples = static_cast<size_t>(rep.examples);
  stats.mean_loss = std::isfinite(rep.mean_loss) ? rep.mean_loss : 0;
  stats.flops = rep.flops;
  return stats;
}

}  // namespace

extern "C" int frugal_embed_simulate(const char* scenario_path, const char* const* overrides, size_t n_overrides,
                                     const char* out_dir, const frugal_sim_trainer* trainer, char* error,
                                     size_t error_len) {
  if (trainer == nullptr || trainer->struct_size < sizeof(frugal_sim_trainer) || trainer->train == nullptr) {
    CopyError("frugal_embed_simulate: a frugal_sim_trainer with struct_size and train is required", error, error_len);
    return 2;
  }
  if (scenario_path == nullptr || *scenario_path == '\0') {
    CopyError("frugal_embed_simulate: a scenario path is required", error, error_len);
    return 2;
  }
  std::vector<std::string> sets;
  for (size_t i = 0; i < n_overrides; ++i) {
    if (overrides[i] != nullptr) sets.emplace_back(overrides[i]);
  }
  auto cfg = frugal::sim::LoadSimConfig(scenario_path, sets);
  if (!cfg.ok()) {
    CopyError(cfg.error().ToString(), error, error_len);
    return 2;
  }
  const frugal_sim_trainer t = *trainer;
  frugal::sim::RunOptions opts;
  if (out_dir != nullptr) opts.out_dir = out_dir;
  opts.app_train = [t](const frugal::sim::AppTrainInput& in, std::span<float> params) {
    return TrainWithApp(t, in, params);
  };
  auto run = frugal::sim::RunSimulation(*cfg, opts);
  if (!run.ok()) {
    CopyError(run.error().ToString(), error, error_len);
    return 1;
  }
  return 0;
}
