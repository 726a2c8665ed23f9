// The embedding API (frugal/client/embed.h) and its C ABI (frugal_embed.h).
#include "frugal/client/embed.h"

#include <cstring>
#include <string>
#include <vector>

#include "frugal/client/agent.h"
#include "frugal/client/frugal_embed.h"

namespace frugal::embed {
inline namespace v1 {

int ApiVersion() { return FRUGAL_EMBED_API_VERSION; }

Status Run(const std::string& config_path, const std::vector<std::string>& overrides, Trainer& trainer) {
  FRUGAL_ASSIGN_OR_RETURN(client::ClientConfig cfg, client::LoadClientConfig(config_path, overrides));
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<client::Agent> agent, client::Agent::Create(cfg, &trainer));
  return agent->Run();
}

}  // namespace v1
}  // namespace frugal::embed

namespace {

// The C callbacks as an embed::Trainer.
class CTrainer final : public frugal::embed::Trainer {
 public:
  explicit CTrainer(const frugal_trainer& t) : t_(t) {}
  uint32_t input_dim() const override { return t_.input_dim; }
  uint32_t num_classes() const override { return t_.num_classes; }
  uint64_t num_examples() const override { return t_.num_examples; }
  frugal::Status Train(std::span<float> params, const frugal::embed::TrainRequest& r,
                       frugal::embed::TrainReport* out) override {
    const frugal_train_request req{r.round, r.seed, r.epochs, r.batch_size, r.learning_rate};
    frugal_train_report rep{};
    if (int rc = t_.train(t_.user, params.data(), params.size(), &req, &rep); rc != 0) {
      return frugal::UnavailableError("the app's train callback returned " + std::to_string(rc));
    }
    *out = {rep.examples, rep.mean_loss, rep.flops};
    return frugal::OkStatus();
  }
  frugal::Status Evaluate(std::span<const float> params, frugal::embed::EvalReport* out) override {
    frugal_eval_report rep{};
    if (int rc = t_.evaluate(t_.user, params.data(), params.size(), &rep); rc != 0) {
      return frugal::UnavailableError("the app's evaluate callback returned " + std::to_string(rc));
    }
    *out = {rep.examples, rep.accuracy, rep.loss};
    return frugal::OkStatus();
  }

 private:
  frugal_trainer t_;
};

void CopyError(const std::string& message, char* error, size_t error_len) {
  if (error == nullptr || error_len == 0) return;
  const size_t n = std::min(message.size(), error_len - 1);
  std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

}  // namespace

extern "C" int frugal_embed_abi_version(void) { return FRUGAL_EMBED_ABI_VERSION; }

extern "C" int frugal_embed_run(const char* config_path, const char* const* overrides, size_t n_overrides,
                                const frugal_trainer* trainer, char* error, size_t error_len) {
  if (trainer == nullptr || trainer->struct_size < sizeof(frugal_trainer) || trainer->train == nullptr ||
      trainer->evaluate == nullptr) {
    CopyError("frugal_embed_run: a frugal_trainer with struct_size, train and evaluate is required", error, error_len);
    return frugal::client::kExitSetup;
  }
  std::vector<std::string> sets;
  for (size_t i = 0; i < n_overrides; ++i) {
    if (overrides[i] != nullptr) sets.emplace_back(overrides[i]);
  }
  CTrainer app(*trainer);
  auto cfg = frugal::client::LoadClientConfig(config_path != nullptr ? config_path : "", sets);
  if (!cfg.ok()) {
    CopyError(cfg.error().ToString(), error, error_len);
    return frugal::client::kExitSetup;
  }
  auto agent = frugal::client::Agent::Create(*cfg, &app);
  if (!agent.ok()) {
    CopyError(agent.error().ToString(), error, error_len);
    return frugal::client::kExitSetup;
  }
  const frugal::Status st = (*agent)->Run();
  if (!st.ok()) CopyError(st.error().ToString(), error, error_len);
  return frugal::client::ExitCodeFor(st);
}
