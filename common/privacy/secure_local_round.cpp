#include "frugal/privacy/secure_local_round.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "frugal/privacy/secagg.h"

namespace frugal::privacy {

Result<std::unique_ptr<LocalSecureRound>> LocalSecureRound::Start(const SecureRoundConfig& cfg, CpuClock cpu,
                                                                  SecureProtocol protocol,
                                                                  std::vector<SecureIdentity> identities) {
  if (!cpu) return InvalidArgumentError("local secure round: no CPU clock");
  FRUGAL_RETURN_IF_ERROR(ValidateSecureRoundConfig(cfg));
  if (protocol == SecureProtocol::kSumOnly) {
    std::unique_ptr<LocalSecureRound> r(new LocalSecureRound(cfg, std::move(cpu), std::nullopt));
    r->costs_.resize(cfg.clients);
    r->masked_.resize(cfg.clients);
    return r;
  }
  // Parties are named by their positions: client id p sits on position p.
  SecureRoundPlan plan{.config = cfg, .clients = std::vector<uint64_t>(cfg.clients),
                       .positions = std::vector<uint32_t>(cfg.clients), .identities = {}};
  std::iota(plan.clients.begin(), plan.clients.end(), uint64_t{0});
  std::iota(plan.positions.begin(), plan.positions.end(), 0u);
  if (!identities.empty() && identities.size() != cfg.clients) {
    return InvalidArgumentError("local secure round: " + std::to_string(identities.size()) + " identities for " +
                                std::to_string(cfg.clients) + " clients");
  }
  std::optional<P256PublicKey> ca;
  if (!identities.empty()) {
    ca = identities[0].ca_public;
    for (const auto& id : identities) plan.identities.push_back(id.credential.name);
  }
  FRUGAL_ASSIGN_OR_RETURN(SecureRoundServer server, SecureRoundServer::Open(plan, ca));
  std::unique_ptr<LocalSecureRound> r(new LocalSecureRound(cfg, std::move(cpu), std::optional(std::move(server))));
  const uint32_t n = cfg.clients;
  r->costs_.resize(n);
  r->inboxes_.resize(n);
  r->masked_.resize(n);
  for (uint32_t u = 0; u < n; ++u) {
    const double t0 = r->cpu_();
    std::optional<SecureIdentity> identity;
    if (!identities.empty()) identity = std::move(identities[u]);
    FRUGAL_ASSIGN_OR_RETURN(SecureAggClient c, SecureAggClient::Create(cfg, u, std::move(identity)));
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, c.AdvertiseKeys());
    r->costs_[u].setup_cpu_s += r->cpu_() - t0;
    const double s0 = r->cpu_();
    FRUGAL_RETURN_IF_ERROR(r->server_->Receive(u, cfg.round, 1, msg));
    r->server_cpu_s_ += r->cpu_() - s0;
    r->clients_.push_back(std::move(c));
  }
  double s0 = r->cpu_();
  FRUGAL_ASSIGN_OR_RETURN(auto directories, r->server_->CloseStage());
  r->server_cpu_s_ += r->cpu_() - s0;
  for (auto& [u, dir] : directories) {
    const double t0 = r->cpu_();
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, r->clients_[u].ShareKeys(dir));
    r->costs_[u].setup_cpu_s += r->cpu_() - t0;
    s0 = r->cpu_();
    FRUGAL_RETURN_IF_ERROR(r->server_->Receive(u, cfg.round, 2, msg));
    r->server_cpu_s_ += r->cpu_() - s0;
  }
  s0 = r->cpu_();
  FRUGAL_ASSIGN_OR_RETURN(auto inboxes, r->server_->CloseStage());
  r->server_cpu_s_ += r->cpu_() - s0;
  for (auto& [u, inbox] : inboxes) r->inboxes_[u] = std::move(inbox);
  return r;
}

SecureClientCost LocalSecureRound::cost(uint32_t position) const {
  SecureClientCost c = server_ ? server_->cost(position) : SecureClientCost{};
  if (position < costs_.size()) {
    c.setup_cpu_s = costs_[position].setup_cpu_s;
    c.mask_cpu_s = costs_[position].mask_cpu_s;
    c.unmask_cpu_s = costs_[position].unmask_cpu_s;
    c.check_sign_cpu_s = costs_[position].check_sign_cpu_s;
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
  if (!server_) {
    // The message a masked input would be, carrying the input itself: checked as
    // SecureAggClient checks it, and the same size on the wire.
    if (input.size() != cfg_.length) {
      return InvalidArgumentError("local secure round: input has " + std::to_string(input.size()) +
                                  " entries, round wants " + std::to_string(cfg_.length));
    }
    const uint64_t ring = RingMask(cfg_.bits);
    if (std::any_of(input.begin(), input.end(), [ring](uint64_t v) { return v > ring; })) {
      return InvalidArgumentError("local secure round: input entry outside Z_2^" + std::to_string(cfg_.bits));
    }
    SecureMessage m;
    m.header = {SecureMessageType::kMaskedInput, cfg_.session_id, cfg_.round, position};
    m.bits = static_cast<uint8_t>(cfg_.bits);
    m.masked.assign(input.begin(), input.end());
    masked_[position] = EncodeSecureMessage(m);
    return masked_[position];
  }
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
  if (!server_) return SumOnly(delivered);
  double s0 = cpu_();
  for (uint32_t u : delivered) {
    if (u >= cfg_.clients || masked_[u].empty()) {
      return InvalidArgumentError("local secure round: no masked input from " + std::to_string(u));
    }
    FRUGAL_RETURN_IF_ERROR(server_->Receive(u, cfg_.round, 3, masked_[u]));
  }
  FRUGAL_ASSIGN_OR_RETURN(auto lists, server_->CloseStage());
  server_cpu_s_ += cpu_() - s0;
  server_check_cpu_s_ = 0;
  // Stage 4: every survivor signs the one survivor list; stage 5: each checks
  // its neighbours' signatures on it and reveals its shares.
  for (auto& [u, list] : lists) {
    const double t0 = cpu_();
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, clients_[u].SignSurvivors(list));
    costs_[u].unmask_cpu_s = cpu_() - t0;
    costs_[u].check_sign_cpu_s = costs_[u].unmask_cpu_s;
    s0 = cpu_();
    FRUGAL_RETURN_IF_ERROR(server_->Receive(u, cfg_.round, 4, msg));
    server_check_cpu_s_ += cpu_() - s0;
  }
  s0 = cpu_();
  FRUGAL_ASSIGN_OR_RETURN(auto signatures, server_->CloseStage());
  server_check_cpu_s_ += cpu_() - s0;
  server_cpu_s_ += server_check_cpu_s_;
  for (auto& [u, sigs] : signatures) {
    const double t0 = cpu_();
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> msg, clients_[u].Unmask(sigs));
    costs_[u].unmask_cpu_s += cpu_() - t0;
    s0 = cpu_();
    FRUGAL_RETURN_IF_ERROR(server_->Receive(u, cfg_.round, 5, msg));
    server_cpu_s_ += cpu_() - s0;
  }
  s0 = cpu_();
  auto sum = server_->Finish();
  server_unmask_cpu_s_ = cpu_() - s0;
  server_cpu_s_ += server_unmask_cpu_s_;
  if (!sum.ok()) return sum.error();
  SecureAggregate out;
  out.sum = std::move(sum->sum);
  for (uint64_t u : sum->survivors) out.survivors.push_back(static_cast<uint32_t>(u));
  for (uint64_t u : sum->dropped) out.dropped.push_back(static_cast<uint32_t>(u));
  return out;
}

// What unmasking would return, without the protocol: every position shared
// keys (Start), so the dropped are those not delivered; the round fails where
// the server would, with fewer than t + 1 inputs or a self seed (survivor) or
// mask key (dropped) that fewer than t surviving neighbours hold shares of.
Result<SecureAggregate> LocalSecureRound::SumOnly(std::span<const uint32_t> delivered) const {
  std::vector<bool> survived(cfg_.clients, false);
  for (uint32_t u : delivered) {
    if (u >= cfg_.clients || masked_[u].empty()) {
      return InvalidArgumentError("local secure round: no masked input from " + std::to_string(u));
    }
    if (survived[u]) return InvalidArgumentError("local secure round: duplicate masked input from " + std::to_string(u));
    survived[u] = true;
  }
  const std::string round = "secure round " + std::to_string(cfg_.round);
  if (delivered.size() < cfg_.threshold + 1) {
    return FailedPreconditionError(round + " aborted: " + std::to_string(delivered.size()) +
                                   " clients left after masked input, fewer than threshold + 1 = " +
                                   std::to_string(cfg_.threshold + 1));
  }
  SecureAggregate out;
  for (uint32_t u = 0; u < cfg_.clients; ++u) {
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> neighbours, SecureNeighbours(cfg_, u));
    const auto holders = static_cast<uint32_t>(
        std::count_if(neighbours.begin(), neighbours.end(), [&survived](uint32_t v) { return survived[v]; }));
    if (holders < cfg_.threshold) {
      return FailedPreconditionError(round + " aborted: " + std::to_string(holders) + " surviving neighbours of " +
                                     std::to_string(u) + " hold shares of its " +
                                     (survived[u] ? "self mask" : "pairwise masks") + ", threshold is " +
                                     std::to_string(cfg_.threshold));
    }
    (survived[u] ? out.survivors : out.dropped).push_back(u);
  }
  out.sum.assign(cfg_.length, 0);
  const uint64_t ring = RingMask(cfg_.bits);
  for (uint32_t u : out.survivors) {
    FRUGAL_ASSIGN_OR_RETURN(SecureMessage m, DecodeSecureMessage(masked_[u]));
    for (size_t i = 0; i < m.masked.size(); ++i) out.sum[i] = (out.sum[i] + m.masked[i]) & ring;
  }
  return out;
}

}  // namespace frugal::privacy
