#include "frugal/sim/residual_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace frugal::sim {

ResidualStore::ResidualStore(size_t dim, size_t memory_budget_bytes, std::string spill_path)
    : dim_(dim), budget_(memory_budget_bytes), spill_path_(std::move(spill_path)) {}

ResidualStore::~ResidualStore() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(spill_path_.c_str());
  }
}

Status ResidualStore::Load(uint64_t client, std::span<float> out) {
  if (out.size() != dim_) return InvalidArgumentError("residual buffer has the wrong size");
  uint64_t slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resident_.find(client);
    if (it != resident_.end()) {
      std::copy(it->second.begin(), it->second.end(), out.begin());
      return OkStatus();
    }
    auto s = slots_.find(client);
    if (s == slots_.end()) {
      std::fill(out.begin(), out.end(), 0.0f);
      return OkStatus();
    }
    slot = s->second;
  }
  const size_t n = dim_ * sizeof(float);
  const ssize_t got = ::pread(fd_, out.data(), n, static_cast<off_t>(slot * n));
  if (got != static_cast<ssize_t>(n)) {
    return DataLossError("reading residual of client " + std::to_string(client) + " from " + spill_path_ + ": " +
                         (got < 0 ? std::strerror(errno) : "short read"));
  }
  return OkStatus();
}

Status ResidualStore::Store(uint64_t client, std::span<const float> residual) {
  if (residual.size() != dim_) return InvalidArgumentError("residual has the wrong size");
  const size_t n = dim_ * sizeof(float);
  uint64_t slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resident_.find(client);
    if (it != resident_.end()) {
      std::copy(residual.begin(), residual.end(), it->second.begin());
      return OkStatus();
    }
    auto s = slots_.find(client);
    if (s != slots_.end()) {
      slot = s->second;
    } else if ((resident_.size() + 1) * n <= budget_) {
      resident_.emplace(client, std::vector<float>(residual.begin(), residual.end()));
      return OkStatus();
    } else {
      if (fd_ < 0) {
        fd_ = ::open(spill_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd_ < 0) {
          return UnavailableError("cannot create residual spill file " + spill_path_ + ": " + std::strerror(errno));
        }
      }
      slot = next_slot_++;
      slots_[client] = slot;
    }
  }
  const ssize_t put = ::pwrite(fd_, residual.data(), n, static_cast<off_t>(slot * n));
  if (put != static_cast<ssize_t>(n)) {
    return UnavailableError("writing residual of client " + std::to_string(client) + " to " + spill_path_ + ": " +
                            (put < 0 ? std::strerror(errno) : "short write"));
  }
  return OkStatus();
}

size_t ResidualStore::clients() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resident_.size() + slots_.size();
}

size_t ResidualStore::resident_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resident_.size() * dim_ * sizeof(float);
}

size_t ResidualStore::spilled_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_.size() * dim_ * sizeof(float);
}

}  // namespace frugal::sim
