#include "frugal/sim/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace frugal::sim {

ProgressBar::ProgressBar(bool enabled, uint32_t rounds) : enabled_(enabled && ::isatty(STDERR_FILENO) == 1), rounds_(rounds) {}

void ProgressBar::Update(uint32_t round, size_t done, size_t total) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  const double now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (done != total && now - last_draw_ < 0.1) return;
  last_draw_ = now;
  const int width = 30;
  const double frac = rounds_ == 0 ? 1.0 : ((round - 1) + (total ? static_cast<double>(done) / total : 1.0)) / rounds_;
  const int filled = static_cast<int>(frac * width);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r[%s] round %u/%u  clients %zu/%zu ", bar.c_str(), round, rounds_, done, total);
  std::fflush(stderr);
}

void ProgressBar::Clear() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  std::fprintf(stderr, "\r%80s\r", "");
  std::fflush(stderr);
}

}  // namespace frugal::sim
