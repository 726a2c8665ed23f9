#include "session_manager.h"

#include <algorithm>

#include "session.h"

namespace frugal::coordinator {

SessionManager::SessionManager(const CoordinatorConfig& config) : config_(config) {}

SessionManager::~SessionManager() = default;

void SessionManager::Add(std::shared_ptr<Session> s) { sessions_[s->conn_id()] = std::move(s); }

void SessionManager::Remove(uint64_t conn_id) {
  if (auto it = sessions_.find(conn_id); it != sessions_.end() && it->second->registered()) {
    auto p = presence_.find(it->second->identity());
    if (p != presence_.end()) p->second.mid_frame = false;
  }
  if (sessions_.erase(conn_id) != 0 && driver_ != nullptr && !stopping_) driver_->OnDisconnect(conn_id, Now());
}

void SessionManager::StopAll() {
  auto copy = sessions_;
  for (auto& [id, s] : copy) s->Stop();
  sessions_.clear();
}

void SessionManager::ByeAll(const std::string& reason) {
  v1::Envelope bye;
  bye.mutable_bye()->set_reason(reason);
  auto copy = sessions_;
  for (auto& [id, s] : copy) {
    s->Send(bye);
    s->CloseAfterWrites();
  }
}

void SessionManager::HeartbeatAll() {
  v1::Envelope hb;
  hb.mutable_heartbeat()->set_sequence(++heartbeat_seq_);
  auto copy = sessions_;
  for (auto& [id, s] : copy) {
    if (s->registered()) s->Send(hb);
  }
}

void SessionManager::Send(uint64_t conn, const v1::Envelope& env) {
  auto it = sessions_.find(conn);
  if (it != sessions_.end()) it->second->Send(env);
}

void SessionManager::SendTogether(uint64_t conn, std::span<const v1::Envelope> envs) {
  auto it = sessions_.find(conn);
  if (it != sessions_.end()) it->second->Send(envs);
}

double SessionManager::Now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void SessionManager::Seen(const std::string& identity, bool mid_frame) {
  presence_[identity] = Presence{.last_seen = Now(), .mid_frame = mid_frame};
}

std::optional<double> SessionManager::SecondsSinceSeen(const std::string& identity) const {
  auto it = presence_.find(identity);
  if (it == presence_.end()) return std::nullopt;
  return Now() - it->second.last_seen;
}

bool SessionManager::Receiving(const std::string& identity) const {
  auto it = presence_.find(identity);
  return it != presence_.end() && it->second.mid_frame;
}

DashboardView SessionManager::Dashboard() const {
  DashboardView v = driver_->Dashboard(Now());
  for (DashboardClient& c : v.clients) {
    c.last_seen_s = SecondsSinceSeen(c.name);
    if (c.state == "training" && Receiving(c.name)) c.state = "uploading";
  }
  return v;
}

bool SessionManager::Revoked(const std::string& identity) const {
  const auto& revoked = config_.service.revoked;
  return std::find(revoked.begin(), revoked.end(), identity) != revoked.end();
}

}  // namespace frugal::coordinator
