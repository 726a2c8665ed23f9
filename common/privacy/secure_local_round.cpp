#include "frugal/privacy/secure_local_round.h"

#include <string>

namespace frugal::privacy {

Result<std::unique_ptr<LocalSecureRound>> LocalSecureRound::Start(const SecureRoundConfig& cfg, CpuClock cpu) {
  if (!cpu) return InvalidArgumentError("local secure round: no CPU clock");
  FRUGAL_ASSIGN_OR_RETURN(SecureAggServer server, SecureAggServer::Create(cfg));
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
    r->costs_[u].setup_bytes_up += msg.size();
    const double s0 = r->cpu_();
    FRUGAL_RETURN_IF_ERROR(r->server_.OnAdvertiseKeys(u, msg));
    r->server_cpu_s_ += r->cpu_() - s0;
    r->clients_.push_back(std::move(c));
  }
  double s0 = r->cpu_();
  FRUGAL_ASSIGN_OR_RETURN(auto directories, r->server_.CloseAdvertiseKeys());
  r->server_cpu_s_ += r->cpu_() - s0;
  for (auto& [u, dir] : directories) {
    r->costs_[u].setup_bytes_down += dir.size();
    const double t0 = r->cpu_();
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, r->clients_[u].ShareKeys(dir));
    r->costs_[u].setup_cpu_s += r->cpu_() - t0;
    r->costs_[u].setup_bytes_up += msg.size();
    s0 = r->cpu_();
    FRUGAL_RETURN_IF_ERROR(r->server_.OnShareKeys(u, msg));
    r->server_cpu_s_ += r->cpu_() - s0;
  }
  s0 = r->cpu_();
  FRUGAL_ASSIGN_OR_RETURN(auto inboxes, r->server_.CloseShareKeys());
  r->server_cpu_s_ += r->cpu_() - s0;
  for (auto& [u, inbox] : inboxes) {
    r->costs_[u].setup_bytes_down += inbox.size();
    r->inboxes_[u] = std::move(inbox);
  }
  for (auto& c : r->costs_) {
    c.bytes_up = c.setup_bytes_up;
    c.bytes_down = c.setup_bytes_down;
  }
  return r;
}

Result<std::vector<uint8_t>> LocalSecureRound::MaskedInput(uint32_t position, std::span<const uint64_t> input) {
  if (position >= cfg_.clients) return InvalidArgumentError("local secure round: position out of range");
  if (inboxes_[position].empty()) {
    return FailedPreconditionError("local secure round: client " + std::to_string(position) +
                                   " was dropped before the masked input");
  }
  const double t0 = cpu_();
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, clients_[position].MaskedInput(inboxes_[position], input));
  SecureClientCost& c = costs_[position];
  c.mask_cpu_s = cpu_() - t0;
  c.masked_bytes = msg.size();
  c.bytes_up = c.setup_bytes_up + msg.size();
  masked_[position] = msg;
  return msg;
}

Result<SecureAggregate> LocalSecureRound::Finish(std::span<const uint32_t> delivered) {
  double s0 = cpu_();
  for (uint32_t u : delivered) {
    if (u >= cfg_.clients || masked_[u].empty()) {
      return InvalidArgumentError("local secure round: no masked input from " + std::to_string(u));
    }
    FRUGAL_RETURN_IF_ERROR(server_.OnMaskedInput(u, masked_[u]));
  }
  FRUGAL_ASSIGN_OR_RETURN(auto requests, server_.CloseMaskedInput());
  server_cpu_s_ += cpu_() - s0;
  for (auto& [u, req] : requests) {
    SecureClientCost& c = costs_[u];
    c.bytes_down += req.size();
    const double t0 = cpu_();
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, clients_[u].Unmask(req));
    c.unmask_cpu_s = cpu_() - t0;
    c.bytes_up += msg.size();
    s0 = cpu_();
    FRUGAL_RETURN_IF_ERROR(server_.OnUnmaskResponse(u, msg));
    server_cpu_s_ += cpu_() - s0;
  }
  s0 = cpu_();
  auto out = server_.Finish();
  server_unmask_cpu_s_ = cpu_() - s0;
  server_cpu_s_ += server_unmask_cpu_s_;
  return out;
}

}  // namespace frugal::privacy
