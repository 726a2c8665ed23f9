#include "frugal/privacy/secure_round.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "frugal/core/random.h"
#include "frugal/core/streams.h"

namespace frugal::privacy {
namespace {

// Domain separation of the secure pipeline's draws from the training stream.
constexpr uint64_t kSecureStream = 0x5ECA66ULL;

std::string Str(uint64_t v) { return std::to_string(v); }

}  // namespace

Result<SecureRoundPlan> PlanSecureRoundFor(const SecurePipelineConfig& pipeline, uint64_t run_seed,
                                           uint64_t session_id, uint32_t round, std::span<const uint64_t> clients,
                                           uint32_t support_size) {
  std::set<uint64_t> distinct(clients.begin(), clients.end());
  if (distinct.size() != clients.size()) return InvalidArgumentError("secure round: a client is listed twice");
  SecureRoundPlan plan;
  FRUGAL_ASSIGN_OR_RETURN(plan.config,
                          PlanSecureRound(session_id, round, static_cast<uint32_t>(clients.size()), pipeline.corrupt,
                                          pipeline.dropout, pipeline.ring.bits, support_size));
  plan.config.identity = pipeline.identity;
  plan.clients.assign(clients.begin(), clients.end());
  plan.positions.resize(clients.size());
  std::iota(plan.positions.begin(), plan.positions.end(), 0u);
  Rng rng(DeriveSeed(StreamSeed(run_seed, SeedStream::kTrain), kSecureStream + round));
  rng.Shuffle(std::span<uint32_t>(plan.positions));
  return plan;
}

uint64_t SecureRoundingSeed(uint64_t run_seed, uint32_t round, uint64_t client) {
  return DeriveSeed(RoundClientSeed(run_seed, SeedStream::kTrain, round, client), kSecureStream);
}

Result<std::vector<uint64_t>> SecureClientInput(std::span<const float> update, std::span<const uint32_t> support,
                                                const RingQuantConfig& ring, uint64_t run_seed, uint32_t round,
                                                uint64_t client, std::span<float> residual, const NoiseKey* noise_key) {
  return RingQuantize(update, support, ring, SecureRoundingSeed(run_seed, round, client), residual, noise_key);
}

SecureRoundServer::SecureRoundServer(SecureAggServer server, const SecureRoundPlan& plan)
    : server_(std::move(server)),
      client_at_(plan.clients.size()),
      identity_at_(plan.clients.size()),
      delivered_(6),
      costs_(plan.clients.size()) {
  for (size_t i = 0; i < plan.clients.size(); ++i) {
    position_[plan.clients[i]] = plan.positions[i];
    client_at_[plan.positions[i]] = plan.clients[i];
    if (i < plan.identities.size()) identity_at_[plan.positions[i]] = plan.identities[i];
    awaited_.insert(plan.positions[i]);
  }
}

Result<SecureRoundServer> SecureRoundServer::Open(const SecureRoundPlan& plan,
                                                  std::optional<P256PublicKey> identity_ca) {
  const uint32_t n = plan.config.clients;
  if (plan.clients.size() != n || plan.positions.size() != n) {
    return InvalidArgumentError("secure round: the plan places " + Str(plan.positions.size()) + " of " +
                                Str(plan.clients.size()) + " clients on " + Str(n) + " positions");
  }
  std::set<uint32_t> seen(plan.positions.begin(), plan.positions.end());
  if (seen.size() != n || (n > 0 && *seen.rbegin() != n - 1)) {
    return InvalidArgumentError("secure round: the plan's positions are not 0.." + Str(n) + "-1");
  }
  if (!plan.identities.empty() && plan.identities.size() != n) {
    return InvalidArgumentError("secure round: the plan names " + Str(plan.identities.size()) + " identities for " +
                                Str(n) + " clients");
  }
  FRUGAL_ASSIGN_OR_RETURN(SecureAggServer server, SecureAggServer::Create(plan.config, identity_ca));
  return SecureRoundServer(std::move(server), plan);
}

std::optional<uint32_t> SecureRoundServer::PositionOf(uint64_t client) const {
  auto it = position_.find(client);
  if (it == position_.end()) return std::nullopt;
  return it->second;
}

size_t SecureRoundServer::MaxMessageBytes(uint32_t stage) const {
  const SecureRoundConfig& c = server_.config();
  const size_t per_peer = 512;  // a sealed bundle is 128 bytes, a revealed share under 64
  switch (stage) {
    case 1: return 512;  // 18 + 97 keys, 1 + 162 credential, 64 signature
    case 2: return 64 + size_t{c.degree} * per_peer;
    case 3: return 64 + (size_t{c.length} * static_cast<size_t>(c.bits) + 7) / 8;
    case 4: return 64 + 64;  // a signature
    case 5: return 64 + 2 * size_t{c.degree} * per_peer;
    default: return 0;
  }
}

Status SecureRoundServer::Receive(uint64_t client, uint32_t round, uint32_t stage, std::span<const uint8_t> bytes) {
  const uint32_t r = server_.config().round;
  const std::string who = "SecAgg stage " + Str(stage) + " message from client " + Str(client) + " for round " +
                          Str(round);
  if (round != r) return FailedPreconditionError(who + ": the open secure round is " + Str(r));
  auto pos = PositionOf(client);
  if (!pos) return FailedPreconditionError(who + ": the client is not in secure round " + Str(r));
  if (stage_ == 0) return FailedPreconditionError(who + ": the round's protocol has ended");
  if (stage != static_cast<uint32_t>(stage_)) {
    return FailedPreconditionError(who + ": round " + Str(r) + " is in stage " + Str(stage_));
  }
  if (delivered_[stage].contains(*pos)) return FailedPreconditionError(who + ": a duplicate");
  if (!awaited_.contains(*pos)) return FailedPreconditionError(who + ": the client has left the protocol");
  if (bytes.size() > MaxMessageBytes(stage)) {
    return InvalidArgumentError(who + ": " + Str(bytes.size()) + " bytes, over the stage's bound of " +
                                Str(MaxMessageBytes(stage)));
  }
  Status st = stage == 1   ? server_.OnAdvertiseKeys(*pos, bytes, identity_at_[*pos])
              : stage == 2 ? server_.OnShareKeys(*pos, bytes)
              : stage == 3 ? server_.OnMaskedInput(*pos, bytes)
              : stage == 4 ? server_.OnSurvivorSignature(*pos, bytes)
                           : server_.OnUnmaskResponse(*pos, bytes);
  if (!st.ok()) return st.error().WithContext(who);
  delivered_[stage].insert(*pos);
  SecureClientCost& c = costs_[*pos];
  c.bytes_up += bytes.size();
  if (stage <= 2) c.setup_bytes_up += bytes.size();
  if (stage == 3) c.masked_bytes = bytes.size();
  if (stage == 4) c.check_bytes_up += bytes.size();
  return OkStatus();
}

void SecureRoundServer::Drop(uint64_t client) {
  if (auto pos = PositionOf(client)) awaited_.erase(*pos);
}

bool SecureRoundServer::StageComplete() const {
  if (stage_ == 0) return true;
  for (uint32_t p : awaited_) {
    if (!delivered_[stage_].contains(p)) return false;
  }
  return true;
}

Result<std::map<uint64_t, std::vector<uint8_t>>> SecureRoundServer::CloseStage() {
  if (stage_ < 1 || stage_ > 4) {
    return FailedPreconditionError("secure round " + Str(round()) + ": no stage 1-4 is open (stage " + Str(stage_) +
                                   ")");
  }
  auto next = stage_ == 1   ? server_.CloseAdvertiseKeys()
              : stage_ == 2 ? server_.CloseShareKeys()
              : stage_ == 3 ? server_.CloseMaskedInput()
                            : server_.CloseSurvivorSignatures();
  if (!next.ok()) {
    stage_ = 0;
    return next.error();
  }
  std::map<uint64_t, std::vector<uint8_t>> out;
  awaited_.clear();
  for (auto& [pos, msg] : *next) {
    SecureClientCost& c = costs_[pos];
    c.bytes_down += msg.size();
    if (stage_ <= 2) c.setup_bytes_down += msg.size();
    if (stage_ >= 3) c.check_bytes_down += msg.size();  // the survivor list (closing 3), the signatures (closing 4)
    awaited_.insert(pos);
    out[client_at_[pos]] = std::move(msg);
  }
  ++stage_;
  return out;
}

Result<SecureSum> SecureRoundServer::Finish() {
  if (stage_ != 5) {
    return FailedPreconditionError("secure round " + Str(round()) + ": unmasking is not open (stage " + Str(stage_) +
                                   ")");
  }
  stage_ = 0;
  FRUGAL_ASSIGN_OR_RETURN(SecureAggregate agg, server_.Finish());
  SecureSum out;
  out.sum = std::move(agg.sum);
  for (uint32_t p : agg.survivors) out.survivors.push_back(client_at_[p]);
  for (uint32_t p : agg.dropped) out.dropped.push_back(client_at_[p]);
  std::sort(out.survivors.begin(), out.survivors.end());
  std::sort(out.dropped.begin(), out.dropped.end());
  return out;
}

SecureClientCost SecureRoundServer::cost(uint64_t client) const {
  auto pos = PositionOf(client);
  return pos ? costs_[*pos] : SecureClientCost{};
}

std::vector<uint64_t> SecureRoundServer::Delivered(uint32_t stage) const {
  std::vector<uint64_t> out;
  if (stage < 1 || stage > 5) return out;
  for (uint32_t p : delivered_[stage]) out.push_back(client_at_[p]);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace frugal::privacy
