#include "frugal/privacy/noise.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <utility>

#include "openssl_ptr.h"

namespace frugal::privacy {

struct NoiseStream::Cipher {
  CipherCtxPtr ctx;
};

NoiseKey SeededNoiseKey(uint64_t seed, uint64_t stream, uint32_t round) {
  static constexpr char kLabel[] = "frugal dp noise v1";
  unsigned char in[sizeof kLabel + 20] = {};
  std::memcpy(in, kLabel, sizeof kLabel);
  for (int i = 0; i < 8; ++i) {
    in[sizeof kLabel + i] = static_cast<unsigned char>(seed >> (8 * i));
    in[sizeof kLabel + 8 + i] = static_cast<unsigned char>(stream >> (8 * i));
  }
  for (int i = 0; i < 4; ++i) in[sizeof kLabel + 16 + i] = static_cast<unsigned char>(round >> (8 * i));
  NoiseKey key{};
  unsigned int len = 0;
  // SHA-256 cannot fail on a fixed in-memory input short of memory exhaustion.
  EVP_Digest(in, sizeof in, key.data(), &len, EVP_sha256(), nullptr);
  return key;
}

Result<NoiseStream> NoiseStream::Create(const NoiseKey& key) {
  auto cipher = std::make_unique<Cipher>();
  cipher->ctx.reset(EVP_CIPHER_CTX_new());
  const unsigned char iv[16] = {};
  if (!cipher->ctx || EVP_EncryptInit_ex(cipher->ctx.get(), EVP_aes_256_ctr(), nullptr, key.data(), iv) != 1) {
    return InternalError("DP noise: OpenSSL could not set up AES-256-CTR");
  }
  return NoiseStream(std::move(cipher));
}

NoiseStream::NoiseStream(std::unique_ptr<Cipher> cipher) : cipher_(std::move(cipher)) {}
NoiseStream::NoiseStream(NoiseStream&&) noexcept = default;
NoiseStream& NoiseStream::operator=(NoiseStream&&) noexcept = default;
NoiseStream::~NoiseStream() = default;

void NoiseStream::Refill() {
  // The keystream is the encryption of zeros.
  unsigned char zeros[sizeof buffer_] = {};
  unsigned char out[sizeof buffer_];
  int len = 0;
  if (EVP_EncryptUpdate(cipher_->ctx.get(), out, &len, zeros, sizeof zeros) != 1 || len != sizeof out) {
    // A set-up CTR context does not fail to encrypt; continuing with a stale
    // buffer would repeat noise, so this is a bug to stop on.
    std::abort();
  }
  for (size_t i = 0; i < buffer_.size(); ++i) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; --b) v = (v << 8) | out[8 * i + b];
    buffer_[i] = v;
  }
  next_ = 0;
}

uint64_t NoiseStream::NextU64() {
  if (next_ == buffer_.size()) Refill();
  return buffer_[next_++];
}

double NoiseStream::Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }

double NoiseStream::Normal() {
  // 1 - U lies in (0, 1]: the log stays finite.
  const double u1 = 1.0 - Uniform(), u2 = Uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

namespace {

// log of the Poisson pmf at k for a mean mu >= 10, split as Loader (2000,
// "Fast and accurate computation of binomial probabilities") does into the
// deviance k log(k/mu) + mu - k and Stirling's remainder, so that it keeps
// its accuracy where k log mu - lgamma(k + 1) cancels terms near 1e16 (mu
// around 1e14, as a 32-bit ring for 10 clients asks): there the plain form
// was off by units and the draws' variance by 1% (50% at 4e15).
double LogPoissonPmf(int64_t k, double mu) {
  if (k == 0) return -mu;
  const double dk = static_cast<double>(k);
  const double x = (dk - mu) / mu;
  const double deviance = mu * ((1 + x) * std::log1p(x) - x);
  const double log_root = 0.5 * std::log(2 * std::numbers::pi * dk);
  // lgamma(k + 1) - (k log k - k + log(2 pi k) / 2): exact below 16, Stirling's series above.
  double remainder;
  if (k < 16) {
    remainder = std::lgamma(dk + 1) - (dk * std::log(dk) - dk + log_root);
  } else {
    const double r = 1 / dk, r2 = r * r;
    remainder = r * (1.0 / 12 - r2 * (1.0 / 360 - r2 / 1260));
  }
  return -deviance - log_root - remainder;
}

// Draws Poisson(mu) from `uniform` (any callable returning doubles in [0, 1)).
template <typename Uniform>
int64_t DrawPoisson(double mu, Uniform&& uniform) {
  if (!(mu > 0)) return 0;
  mu = std::min(mu, kMaxPoissonMean);
  if (mu < 10) {
    const double limit = std::exp(-mu);
    int64_t k = 0;
    double p = uniform();
    while (p > limit) {
      ++k;
      p *= uniform();
    }
    return k;
  }
  // Hörmann 1993, "The transformed rejection method for generating Poisson
  // random variables" (PTRS), with NumPy's constants.
  const double slam = std::sqrt(mu);
  const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
  const double invalpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
  for (;;) {
    const double u = uniform() - 0.5, v = uniform();
    const double us = 0.5 - std::fabs(u);
    // us = 0 (the first uniform was exactly 0) would divide by zero; PTRS
    // rejects every us < 0.013 with v > us, and this one with it.
    if (us == 0) continue;
    const double kd = std::floor((2 * a / us + b) * u + mu + 0.43);
    // Far from the mean (us near 0): a candidate the test below rejects anyway
    // (k < 0, or a pmf that underflows), turned away before the cast overflows.
    if (!(kd >= 0 && kd < 0x1p62)) continue;
    const auto k = static_cast<int64_t>(kd);
    if (us >= 0.07 && v <= vr) return k;
    if (us < 0.013 && v > us) continue;
    if (std::log(v) + std::log(invalpha) - std::log(a / (us * us) + b) <= LogPoissonPmf(k, mu)) {
      return k;
    }
  }
}

}  // namespace

int64_t PoissonFromUniforms(double mu, const std::function<double()>& uniform) { return DrawPoisson(mu, uniform); }

int64_t NoiseStream::Poisson(double mu) {
  return DrawPoisson(mu, [this] { return Uniform(); });
}

}  // namespace frugal::privacy
