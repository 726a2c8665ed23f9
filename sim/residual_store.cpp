#include "frugal/sim/residual_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace frugal::sim {
namespace {

// The stored form of a residual: its own bytes for fp32, else converted into
// a per-thread buffer (Load and Store run on the trainer threads).
const uint8_t* Encode(std::span<const float> residual, ResidualPrecision precision) {
  if (precision == ResidualPrecision::kFp32) return reinterpret_cast<const uint8_t*>(residual.data());
  thread_local std::vector<uint16_t> buf;
  buf.resize(residual.size());
  ToBf16(residual, buf.data());
  return reinterpret_cast<const uint8_t*>(buf.data());
}

}  // namespace

void ToBf16(std::span<const float> in, uint16_t* out) {
  for (size_t i = 0; i < in.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &in[i], sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    out[i] = static_cast<uint16_t>(u >> 16);
  }
}

void FromBf16(const uint16_t* in, std::span<float> out) {
  for (size_t i = 0; i < out.size(); ++i) {
    const uint32_t u = static_cast<uint32_t>(in[i]) << 16;
    std::memcpy(&out[i], &u, sizeof u);
  }
}

ResidualStore::ResidualStore(size_t dim, size_t memory_budget_bytes, std::string spill_path,
                             ResidualPrecision precision)
    : dim_(dim),
      budget_(memory_budget_bytes),
      spill_path_(std::move(spill_path)),
      precision_(precision),
      bytes_(dim * (precision == ResidualPrecision::kBf16 ? sizeof(uint16_t) : sizeof(float))) {}

ResidualStore::~ResidualStore() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(spill_path_.c_str());
  }
}

Status ResidualStore::Load(uint64_t client, std::span<float> out) {
  if (out.size() != dim_) return InvalidArgumentError("residual buffer has the wrong size");
  // bf16 is read into a per-thread buffer and widened; fp32 straight into out.
  thread_local std::vector<uint16_t> half;
  uint8_t* dst = reinterpret_cast<uint8_t*>(out.data());
  if (precision_ == ResidualPrecision::kBf16) {
    half.resize(dim_);
    dst = reinterpret_cast<uint8_t*>(half.data());
  }
  uint64_t slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resident_.find(client);
    if (it != resident_.end()) {
      std::memcpy(dst, it->second.data(), bytes_);
      if (precision_ == ResidualPrecision::kBf16) FromBf16(half.data(), out);
      return OkStatus();
    }
    auto s = slots_.find(client);
    if (s == slots_.end()) {
      std::fill(out.begin(), out.end(), 0.0f);
      return OkStatus();
    }
    slot = s->second;
  }
  const ssize_t got = ::pread(fd_, dst, bytes_, static_cast<off_t>(slot * bytes_));
  if (got != static_cast<ssize_t>(bytes_)) {
    return DataLossError("reading residual of client " + std::to_string(client) + " from " + spill_path_ + ": " +
                         (got < 0 ? std::strerror(errno) : "short read"));
  }
  if (precision_ == ResidualPrecision::kBf16) FromBf16(half.data(), out);
  return OkStatus();
}

Status ResidualStore::Store(uint64_t client, std::span<const float> residual) {
  if (residual.size() != dim_) return InvalidArgumentError("residual has the wrong size");
  const uint8_t* src = Encode(residual, precision_);
  uint64_t slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resident_.find(client);
    if (it != resident_.end()) {
      std::memcpy(it->second.data(), src, bytes_);
      return OkStatus();
    }
    auto s = slots_.find(client);
    if (s != slots_.end()) {
      slot = s->second;
    } else if ((resident_.size() + 1) * bytes_ <= budget_) {
      resident_.emplace(client, std::vector<uint8_t>(src, src + bytes_));
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
  const ssize_t put = ::pwrite(fd_, src, bytes_, static_cast<off_t>(slot * bytes_));
  if (put != static_cast<ssize_t>(bytes_)) {
    return UnavailableError("writing residual of client " + std::to_string(client) + " to " + spill_path_ + ": " +
                            (put < 0 ? std::strerror(errno) : "short write"));
  }
  return OkStatus();
}

size_t ResidualStore::clients() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resident_.size() + slots_.size();
}

bool ResidualStore::Holds(uint64_t client) const {
  std::lock_guard<std::mutex> lock(mu_);
  return resident_.contains(client) || slots_.contains(client);
}

size_t ResidualStore::resident_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resident_.size() * bytes_;
}

size_t ResidualStore::spilled_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_.size() * bytes_;
}

}  // namespace frugal::sim
