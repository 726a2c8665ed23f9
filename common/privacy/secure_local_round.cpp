#include "frugal/privacy/secure_local_round.h"

#include <numeric>
#include <string>

namespace frugal::privacy {

Result<std::unique_ptr<LocalSecureRound>> LocalSecureRound::Start(const SecureRoundConfig& cfg, CpuClock cpu) {
  if (!cpu) return InvalidArgumentError("local secure round: no CPU clock");
  FRUGAL_RETURN_IF_ERROR(ValidateSecureRoundConfig(cfg));
  // Parties are named by their positions: client id p sits on position p.
  SecureRoundPlan plan{.config = cfg, .clients = std::vector<uint64_t>(cfg.clients),
                       .positions = std::vector<uint32_t>(cfg.clients)};
  std::iota(plan.clients.begin(), plan.clients.end(), uint64_t{0});
  std::iota(plan.positions.begin(), plan.positions.end(), 0u);
  FRUGAL_ASSIGN_OR_RETURN(SecureRoundServer server, SecureRoundServer::Open(plan));
  std::unique_ptr<LocalSecureRound> r(new LocalSecureRound(cfg, std::move(cpu), std::move(server)));
  const uint32_t n = cfg.clients;
  r->costs_.resize(n);
  r->inboxes_.resize(n);
  r->masked_.resize(n);
  for (uint32_t u = 0; u < n; ++u) {
    const double t0 = r->cpu_();
    FRUGAL_ASSIGN_OR_RETURN(SecureAggClient c, SecureAggClient::Create(cfg, u));
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, c.AdvertiseKeys());
    r->costs_[u].setup_cpu_s += r->cpu_() - t0;
    const double s0 = r->cpu_();
    FRUGAL_RETURN_IF_ERROR(r->server_.Receive(u, cfg.round, 1, msg));
    r->server_cpu_s_ += r->cpu_() - s0;
    r->clients_.push_back(std::move(c));
  }
  double s0 = r->cpu_();
  FRUGAL_ASSIGN_OR_RETURN(auto directories, r->server_.CloseStage());
  r->server_cpu_s_ += r->cpu_() - s0;
  for (auto& [u, dir] : directories) {
    const double t0 = r->cpu_();
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, r->clients_[u].ShareKeys(dir));
    r->costs_[u].setup_cpu_s += r->cpu_() - t0;
    s0 = r->cpu_();
    FRUGAL_RETURN_IF_ERROR(r->server_.Receive(u, cfg.round, 2, msg));
    r->server_cpu_s_ += r->cpu_() - s0;
  }
  s0 = r->cpu_();
  FRUGAL_ASSIGN_OR_RETURN(auto inboxes, r->server_.CloseStage());
  r->server_cpu_s_ += r->cpu_() - s0;
  for (auto& [u, inbox] : inboxes) r->inboxes_[u] = std::move(inbox);
  return r;
}

SecureClientCost LocalSecureRound::cost(uint32_t position) const {
  SecureClientCost c = server_.cost(position);
  if (position < costs_.size()) {
    c.setup_cpu_s = costs_[position].setup_cpu_s;
    c.mask_cpu_s = costs_[position].mask_cpu_s;
    c.unmask_cpu_s = costs_[position].unmask_cpu_s;
  }
  if (position < masked_.size() && c.masked_bytes == 0 && !masked_[position].empty()) {
    // Masked but not (yet) delivered: what its upload costs all the same.
    c.masked_bytes = masked_[position].size();
    c.bytes_up += c.masked_bytes;
  }
  return c;
}

Result<std::vector<uint8_t>> LocalSecureRound::MaskedInput(uint32_t position, std::span<const uint64_t> input) {
  if (position >= cfg_.clients) return InvalidArgumentError("local secure round: position out of range");
  if (inboxes_[position].empty()) {
    return FailedPreconditionError("local secure round: client " + std::to_string(position) +
                                   " was dropped before the masked input");
  }
  const double t0 = cpu_();
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, clients_[position].MaskedInput(inboxes_[position], input));
  costs_[position].mask_cpu_s = cpu_() - t0;
  masked_[position] = msg;
  return msg;
}

Result<SecureAggregate> LocalSecureRound::Finish(std::span<const uint32_t> delivered) {
  double s0 = cpu_();
  for (uint32_t u : delivered) {
    if (u >= cfg_.clients || masked_[u].empty()) {
      return InvalidArgumentError("local secure round: no masked input from " + std::to_string(u));
    }
    FRUGAL_RETURN_IF_ERROR(server_.Receive(u, cfg_.round, 3, masked_[u]));
  }
  FRUGAL_ASSIGN_OR_RETURN(auto requests, server_.CloseStage());
  server_cpu_s_ += cpu_() - s0;
  for (auto& [u, req] : requests) {
    const double t0 = cpu_();
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, clients_[u].Unmask(req));
    costs_[u].unmask_cpu_s = cpu_() - t0;
    s0 = cpu_();
    FRUGAL_RETURN_IF_ERROR(server_.Receive(u, cfg_.round, 4, msg));
    server_cpu_s_ += cpu_() - s0;
  }
  s0 = cpu_();
  auto sum = server_.Finish();
  server_unmask_cpu_s_ = cpu_() - s0;
  server_cpu_s_ += server_unmask_cpu_s_;
  if (!sum.ok()) return sum.error();
  SecureAggregate out;
  out.sum = std::move(sum->sum);
  for (uint64_t u : sum->survivors) out.survivors.push_back(static_cast<uint32_t>(u));
  for (uint64_t u : sum->dropped) out.dropped.push_back(static_cast<uint32_t>(u));
  return out;
}

}  // namespace frugal::privacy
