#include "frugal/privacy/secagg.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>

#include "frugal/core/openssl_error.h"
#include "openssl_ptr.h"

namespace frugal::privacy {
namespace {

Error UnauthenticatedError(std::string message) {
  return {ErrorCode::kUnauthenticated, std::move(message)};
}

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// Reads little-endian integers from outside bytes; every read checks the length.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  std::optional<uint64_t> Read(size_t width) {
    if (bytes_.size() - pos_ < width) return std::nullopt;
    uint64_t v = 0;
    for (size_t i = 0; i < width; ++i) v |= uint64_t{bytes_[pos_ + i]} << (8 * i);
    pos_ += width;
    return v;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

uint64_t FieldAdd(uint64_t a, uint64_t b, uint64_t p) {
  const uint64_t s = a + b;  // a, b < p < 2^63: no overflow
  return s >= p ? s - p : s;
}
uint64_t FieldSub(uint64_t a, uint64_t b, uint64_t p) { return a >= b ? a - b : a + (p - b); }

// A uniform field element below kShamirPrime by rejection (rejects 1 in 2^61).
Result<uint64_t> RandomFieldElement() {
  for (;;) {
    uint64_t v = 0;
    FRUGAL_RETURN_IF_ERROR(RandomBytes(std::span(reinterpret_cast<uint8_t*>(&v), sizeof v)));
    v &= kShamirPrime;  // the low 61 bits
    if (v < kShamirPrime) return v;
  }
}

size_t ChunkCount(size_t secret_size) {
  return (secret_size + kShamirChunkBytes - 1) / kShamirChunkBytes;
}

// log P(X = x), X hypergeometric: `sampled` draws without replacement from
// `total` of which `marked` are marked.
double LogHypergeometricPmf(double total, double marked, double sampled, double x) {
  return std::lgamma(marked + 1) - std::lgamma(x + 1) - std::lgamma(marked - x + 1) +
         std::lgamma(total - marked + 1) - std::lgamma(sampled - x + 1) -
         std::lgamma(total - marked - sampled + x + 1) -
         (std::lgamma(total + 1) - std::lgamma(sampled + 1) - std::lgamma(total - sampled + 1));
}

// The largest x with P(X <= x) < q (or the least possible x, minus one, when
// none), X as above. Sums the lower tail from its bottom: only called for small
// q, where direct summation is accurate.
int LargestBelowQuantile(int total, int marked, int sampled, double q) {
  const int lo = std::max(0, sampled - (total - marked));
  const int hi = std::min(sampled, marked);
  double cdf = 0;
  int x = lo - 1;
  while (x < hi) {
    const double next = cdf + std::exp(LogHypergeometricPmf(total, marked, sampled, x + 1));
    if (next >= q) break;
    cdf = next;
    ++x;
  }
  return x;
}

// A fraction of n rounded so floating error in (fraction · n) never flips an integer.
int CountOf(double fraction, int n, bool round_up) {
  constexpr double kSmall = 1e-14;
  return round_up ? static_cast<int>(std::ceil((fraction - kSmall) * n))
                  : static_cast<int>(std::floor((fraction + kSmall) * n));
}

// Threshold for degree k if k keeps the protocol secure and correct, else nothing.
std::optional<uint32_t> ThresholdForDegree(int n, int k, double corrupt, double dropout,
                                           SecAggAdversary adversary) {
  constexpr double kSecurityBits = 40, kCorrectnessBits = 20;
  // Security splits its budget over two bad events: the honest survivors'
  // graph disconnecting, and a client with t corrupt neighbours.
  const double log_security_per_event = -(kSecurityBits + 1) * std::log(2.0);
  const int corrupt_count = CountOf(corrupt, n, false);
  const int survivor_count = CountOf(1 - dropout, n, true);
  const int bad = corrupt_count + CountOf(dropout, n, false);
  // Removed nodes disconnect H(k, n) only by covering k/2 consecutive positions in
  // two places: union bound over the n(n − k − 1)/2 pairs of gaps, each gap
  // needing k specific clients among the bad ones.
  if (k <= bad) {
    const double log_disconnect = std::log(static_cast<double>(n)) +
                                  std::log(static_cast<double>(n - k - 1)) - std::log(2.0) +
                                  std::lgamma(bad + 1.0) + std::lgamma(n - k + 1.0) -
                                  std::lgamma(n + 1.0) - std::lgamma(bad - k + 1.0);
    if (log_disconnect >= log_security_per_event) return std::nullopt;
  }
  // t1: the smallest a with P(corrupt neighbours > a) < 2^-41 / n, via the honest
  // neighbours' lower tail (P(corrupt >= k − h) = P(honest <= h)).
  const double q_security = std::exp(log_security_per_event) / n;
  const int honest_below = LargestBelowQuantile(n, n - corrupt_count, k, q_security);
  double t1 = k - honest_below - 1;
  // t2: the smallest s with P(surviving neighbours <= s) >= 2^-20 / n; t <= t2
  // keeps P(fewer than t survivors) below that.
  const double q_correct = std::pow(2.0, -kCorrectnessBits) / n;
  const int t2 = LargestBelowQuantile(n, survivor_count, k, q_correct) + 1;
  // A semi-malicious server may claim honest clients dropped out: it must not
  // gather t shares of both kinds, so 2t − k must exceed the corrupt quantile.
  if (adversary == SecAggAdversary::kSemiMalicious) t1 = std::ceil((t1 + k - 1.25) / 2);
  // Shamir needs t >= 2; a t above t2 would break correctness, so try a larger k.
  const double t = std::max(t1 + 1, 2.0);
  if (t > t2) return std::nullopt;
  return static_cast<uint32_t>(t);
}

constexpr size_t kMaxShareChunks = 16;

// A share of a bundle: u8 count | count x u64 y; its point x is not on the wire.
std::optional<ShamirShare> ReadShare(Reader& r, uint32_t x) {
  ShamirShare share;
  const auto count = r.Read(1);
  if (x == 0 || !count || *count == 0 || *count > kMaxShareChunks) return std::nullopt;
  share.x = x;
  for (uint64_t i = 0; i < *count; ++i) {
    const auto y = r.Read(8);
    if (!y || *y >= kShamirPrime) return std::nullopt;
    share.y.push_back(*y);
  }
  return share;
}

constexpr uint8_t kSealVersion = 2;
constexpr uint8_t kBundleVersion = 2;

// The GCM nonce of a sealed share message (frugal/privacy/secagg.h: unique per key).
std::array<uint8_t, 12> ShareNonce(const ShareMessageContext& c) {
  std::array<uint8_t, 12> iv{};
  for (int i = 0; i < 4; ++i) {
    iv[i] = static_cast<uint8_t>(c.round >> (8 * i));
    iv[4 + i] = static_cast<uint8_t>(c.sender >> (8 * i));
    iv[8 + i] = static_cast<uint8_t>(c.recipient >> (8 * i));
  }
  return iv;
}

std::vector<uint8_t> AssociatedData(const ShareMessageContext& c) {
  static constexpr std::string_view kLabel = "frugal-secagg-share";
  std::vector<uint8_t> ad(kLabel.begin(), kLabel.end());
  ad.push_back(kSealVersion);
  PutU64(ad, c.session_id);
  PutU32(ad, c.round);
  PutU32(ad, c.sender);
  PutU32(ad, c.recipient);
  return ad;
}

Result<PkeyPtr> PrivateKeyFromRaw(const Key256& private_key) {
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                           private_key.size()));
  if (!key) return OpenSslFailure("X25519 private key import");
  return key;
}

}  // namespace

Status RandomBytes(std::span<uint8_t> out) {
  // RAND_bytes takes an int length.
  while (!out.empty()) {
    const size_t n = std::min<size_t>(out.size(), 1 << 20);
    if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) return InternalError("RAND_bytes failed");
    out = out.subspan(n);
  }
  return OkStatus();
}

Result<Key256> RandomKey() {
  Key256 key;
  FRUGAL_RETURN_IF_ERROR(RandomBytes(key));
  return key;
}

void Cleanse(std::span<uint8_t> secret) { OPENSSL_cleanse(secret.data(), secret.size()); }

// ---- Shamir ------------------------------------------------------------------------

uint64_t FieldMul(uint64_t a, uint64_t b, uint64_t p) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) % p);
}

uint64_t FieldInverse(uint64_t a, uint64_t p) {
  // Fermat: a^(p−2) mod p.
  uint64_t result = 1, base = a % p, e = p - 2;
  while (e > 0) {
    if (e & 1) result = FieldMul(result, base, p);
    base = FieldMul(base, base, p);
    e >>= 1;
  }
  return result;
}

uint64_t EvaluatePolynomial(std::span<const uint64_t> coefficients, uint64_t x, uint64_t p) {
  uint64_t acc = 0;
  for (size_t i = coefficients.size(); i-- > 0;)
    acc = FieldAdd(FieldMul(acc, x, p), coefficients[i], p);
  return acc;
}

Result<uint64_t> Interpolate(std::span<const uint64_t> xs, std::span<const uint64_t> ys,
                             uint64_t at, uint64_t p) {
  if (xs.empty() || xs.size() != ys.size())
    return InvalidArgumentError("interpolation needs as many ys as xs");
  uint64_t sum = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    uint64_t num = 1, den = 1;
    for (size_t j = 0; j < xs.size(); ++j) {
      if (j == i) continue;
      if (xs[i] == xs[j])
        return InvalidArgumentError("interpolation points repeat x = " + std::to_string(xs[i]));
      num = FieldMul(num, FieldSub(at, xs[j], p), p);
      den = FieldMul(den, FieldSub(xs[i], xs[j], p), p);
    }
    sum = FieldAdd(sum, FieldMul(ys[i], FieldMul(num, FieldInverse(den, p), p), p), p);
  }
  return sum;
}

Result<std::vector<ShamirShare>> ShamirSplit(std::span<const uint8_t> secret, uint32_t threshold,
                                             std::span<const uint32_t> xs) {
  if (secret.empty() || secret.size() > 4096) {
    return InvalidArgumentError("a Shamir secret is 1..4096 bytes, got " +
                                std::to_string(secret.size()));
  }
  if (threshold < 2 || threshold > xs.size()) {
    return InvalidArgumentError("Shamir threshold " + std::to_string(threshold) + " outside [2, " +
                                std::to_string(xs.size()) + "]");
  }
  std::vector<uint32_t> sorted(xs.begin(), xs.end());
  std::sort(sorted.begin(), sorted.end());
  if (sorted.front() == 0 || std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return InvalidArgumentError("Shamir share points must be distinct and nonzero");
  }
  std::vector<ShamirShare> shares(xs.size());
  for (size_t s = 0; s < xs.size(); ++s) shares[s].x = xs[s];
  std::vector<uint64_t> coefficients(threshold);
  for (size_t c = 0; c < ChunkCount(secret.size()); ++c) {
    uint64_t chunk = 0;
    for (size_t b = 0; b < kShamirChunkBytes && c * kShamirChunkBytes + b < secret.size(); ++b) {
      chunk |= uint64_t{secret[c * kShamirChunkBytes + b]} << (8 * b);
    }
    coefficients[0] = chunk;
    for (uint32_t i = 1; i < threshold; ++i) {
      FRUGAL_ASSIGN_OR_RETURN(coefficients[i], RandomFieldElement());
    }
    for (auto& share : shares)
      share.y.push_back(EvaluatePolynomial(coefficients, share.x, kShamirPrime));
  }
  Cleanse(std::span(reinterpret_cast<uint8_t*>(coefficients.data()),
                    coefficients.size() * sizeof(uint64_t)));
  return shares;
}

namespace {

// The Lagrange weights of basis points `xs` (distinct) at `at`, in barycentric
// form: w_i = prod_{j != i} (at - x_j) / (x_i - x_j), with inv_den[i] the
// inverse of prod_{j != i} (x_i - x_j). One field inversion per point (batch
// inversion of the at - x_j), so checking m extra shares costs O(m t), not the
// O(m t^2) inversions of calling Interpolate for each.
std::vector<uint64_t> LagrangeWeights(std::span<const uint64_t> xs, std::span<const uint64_t> inv_den, uint64_t at,
                                      uint64_t p) {
  const size_t t = xs.size();
  std::vector<uint64_t> w(t, 0);
  for (size_t i = 0; i < t; ++i) {
    if (xs[i] == at) {  // `at` is a basis point: its own value
      w[i] = 1;
      return w;
    }
  }
  std::vector<uint64_t> d(t), prefix(t + 1, 1);
  for (size_t j = 0; j < t; ++j) {
    d[j] = FieldSub(at, xs[j], p);
    prefix[j + 1] = FieldMul(prefix[j], d[j], p);
  }
  const uint64_t l = prefix[t];
  uint64_t inv_suffix = FieldInverse(l, p);  // 1 / (d_0 ... d_{t-1})
  for (size_t i = t; i-- > 0;) {
    const uint64_t inv_di = FieldMul(inv_suffix, prefix[i], p);  // 1 / d_i
    inv_suffix = FieldMul(inv_suffix, d[i], p);                  // 1 / (d_0 ... d_{i-1})
    w[i] = FieldMul(FieldMul(l, inv_di, p), inv_den[i], p);
  }
  return w;
}

uint64_t Dot(std::span<const uint64_t> w, std::span<const uint64_t> ys, uint64_t p) {
  uint64_t sum = 0;
  for (size_t i = 0; i < w.size(); ++i) sum = FieldAdd(sum, FieldMul(w[i], ys[i], p), p);
  return sum;
}

}  // namespace

Result<std::vector<uint8_t>> ShamirReconstruct(std::span<const ShamirShare> shares,
                                               uint32_t threshold, size_t secret_size) {
  if (threshold < 2) return InvalidArgumentError("Shamir threshold must be >= 2");
  if (shares.size() < threshold) {
    return InvalidArgumentError("Shamir reconstruction needs " + std::to_string(threshold) +
                                " shares, got " + std::to_string(shares.size()));
  }
  if (secret_size == 0 || secret_size > 4096)
    return InvalidArgumentError("a Shamir secret is 1..4096 bytes");
  const size_t chunks = ChunkCount(secret_size);
  std::vector<uint64_t> xs;
  for (const auto& share : shares) {
    if (share.x == 0) return InvalidArgumentError("a Shamir share has x = 0");
    if (share.y.size() != chunks) {
      return InvalidArgumentError("a Shamir share has " + std::to_string(share.y.size()) +
                                  " chunks, the secret needs " + std::to_string(chunks));
    }
    for (uint64_t y : share.y) {
      if (y >= kShamirPrime)
        return InvalidArgumentError("a Shamir share value is not a field element");
    }
    xs.push_back(share.x);
  }
  std::vector<uint64_t> sorted = xs;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return InvalidArgumentError("Shamir shares repeat a point");
  }
  const std::span<const uint64_t> basis_x(xs.data(), threshold);
  std::vector<uint64_t> inv_den(threshold);
  for (uint32_t i = 0; i < threshold; ++i) {
    uint64_t den = 1;
    for (uint32_t j = 0; j < threshold; ++j) {
      if (j != i) den = FieldMul(den, FieldSub(basis_x[i], basis_x[j], kShamirPrime), kShamirPrime);
    }
    inv_den[i] = FieldInverse(den, kShamirPrime);
  }
  const std::vector<uint64_t> at_zero = LagrangeWeights(basis_x, inv_den, 0, kShamirPrime);
  std::vector<std::vector<uint64_t>> at_extra;
  for (size_t extra = threshold; extra < shares.size(); ++extra) {
    at_extra.push_back(LagrangeWeights(basis_x, inv_den, xs[extra], kShamirPrime));
  }
  std::vector<uint8_t> secret(secret_size);
  std::vector<uint64_t> ys(threshold);
  for (size_t c = 0; c < chunks; ++c) {
    for (uint32_t i = 0; i < threshold; ++i) ys[i] = shares[i].y[c];
    const uint64_t chunk = Dot(at_zero, ys, kShamirPrime);
    const size_t width = std::min(kShamirChunkBytes, secret_size - c * kShamirChunkBytes);
    if (width < 8 && (chunk >> (8 * width)) != 0)
      return DataLossError("Shamir shares do not decode to a secret");
    for (size_t b = 0; b < width; ++b)
      secret[c * kShamirChunkBytes + b] = static_cast<uint8_t>(chunk >> (8 * b));
    for (size_t extra = threshold; extra < shares.size(); ++extra) {
      const uint64_t expected = Dot(at_extra[extra - threshold], ys, kShamirPrime);
      if (expected != shares[extra].y[c])
        return DataLossError("Shamir shares are inconsistent (x = " + std::to_string(xs[extra]) +
                             ")");
    }
  }
  return secret;
}

// ---- Graph ---------------------------------------------------------------------------

Result<SecAggGraphParameters> ComputeSecAggGraphParameters(uint32_t clients, double corrupt,
                                                           double dropout,
                                                           SecAggAdversary adversary) {
  if (clients < 1 || clients > 1'000'000) {
    return InvalidArgumentError("SecAgg+ parameters cover 1..10^6 clients, got " +
                                std::to_string(clients));
  }
  if (!(corrupt >= 0 && corrupt < 1) || !(dropout >= 0 && dropout < 1)) {
    return InvalidArgumentError("corrupt and dropout fractions must be in [0, 1)");
  }
  const bool semi_malicious = adversary == SecAggAdversary::kSemiMalicious;
  if ((!semi_malicious && corrupt + dropout > 0.9) ||
      (semi_malicious && corrupt + 2 * dropout > 0.9)) {
    return FailedPreconditionError(
        "infeasible: need corrupt + dropout <= 0.9 (semi-honest) or corrupt + 2 dropout <= 0.9 "
        "(semi-malicious)");
  }
  const int n = static_cast<int>(clients);
  for (int k = 2; k < n - 1; k += 2) {
    if (auto t = ThresholdForDegree(n, k, corrupt, dropout, adversary)) {
      return SecAggGraphParameters{clients, static_cast<uint32_t>(k), *t};
    }
  }
  return FailedPreconditionError("no SecAgg+ degree below n - 1 meets the bounds for " +
                                 std::to_string(clients) + " clients: use the complete graph");
}

Result<std::vector<uint32_t>> HararyNeighbours(uint32_t n, uint32_t degree, uint32_t position) {
  if (degree < 2 || degree % 2 != 0 || degree >= n || position >= n) {
    return InvalidArgumentError(
        "Harary graph needs an even degree in [2, n) and a position below n");
  }
  std::vector<uint32_t> out;
  for (uint32_t d = 1; d <= degree / 2; ++d) {
    out.push_back(static_cast<uint32_t>((uint64_t{position} + d) % n));
    out.push_back(static_cast<uint32_t>((uint64_t{position} + n - d) % n));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- Keys ----------------------------------------------------------------------------

Result<X25519KeyPair> GenerateX25519KeyPair() {
  X25519KeyPair pair;
  FRUGAL_RETURN_IF_ERROR(RandomBytes(pair.private_key));
  FRUGAL_ASSIGN_OR_RETURN(pair.public_key, X25519PublicKey(pair.private_key));
  return pair;
}

Result<Key256> X25519PublicKey(const Key256& private_key) {
  FRUGAL_ASSIGN_OR_RETURN(X25519Agreement key, X25519Agreement::Load(private_key));
  return key.PublicKey();
}

namespace {

// HKDF, fetched once: OpenSSL 3 looks an algorithm up by name on every
// implicit fetch (EVP_PKEY_CTX_new_id), which cost as much as the derivation
// (a client derives 3k keys a round). Null when the provider has no HKDF.
EVP_KDF* HkdfKdf() {
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  return kdf;
}

}  // namespace

Result<Key256> HkdfSha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                          std::span<const uint8_t> info) {
  EVP_KDF* kdf = HkdfKdf();
  KdfCtxPtr ctx(kdf == nullptr ? nullptr : EVP_KDF_CTX_new(kdf));
  if (!ctx) return OpenSslFailure("HKDF setup");
  // OSSL_PARAM takes non-const pointers; OpenSSL only reads these.
  auto bytes = [](const char* key, std::span<const uint8_t> s) {
    return OSSL_PARAM_construct_octet_string(key, const_cast<uint8_t*>(s.data()), s.size());
  };
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = bytes(OSSL_KDF_PARAM_KEY, ikm);
  if (!salt.empty()) params[n++] = bytes(OSSL_KDF_PARAM_SALT, salt);
  if (!info.empty()) params[n++] = bytes(OSSL_KDF_PARAM_INFO, info);
  params[n] = OSSL_PARAM_construct_end();
  Key256 out;
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) return OpenSslFailure("HKDF derive");
  return out;
}

Result<Ed25519KeyPair> GenerateEd25519KeyPair() {
  Ed25519KeyPair pair;
  FRUGAL_RETURN_IF_ERROR(RandomBytes(pair.private_key));
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, pair.private_key.data(),
                                           pair.private_key.size()));
  if (!key) return OpenSslFailure("Ed25519 private key import");
  size_t len = pair.public_key.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), pair.public_key.data(), &len) != 1 || len != pair.public_key.size()) {
    return OpenSslFailure("Ed25519 public key export");
  }
  return pair;
}

Result<Signature512> Ed25519Sign(const Key256& private_key, std::span<const uint8_t> message) {
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, private_key.data(), private_key.size()));
  if (!key) return OpenSslFailure("Ed25519 private key import");
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    return OpenSslFailure("Ed25519 sign setup");
  }
  Signature512 sig{};
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1 || len != sig.size()) {
    return OpenSslFailure("Ed25519 sign");
  }
  return sig;
}

Status Ed25519Verify(const Key256& public_key, std::span<const uint8_t> message, const Signature512& signature) {
  PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key.data(), public_key.size()));
  if (!key) return InvalidArgumentError("not an Ed25519 public key");
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    return OpenSslFailure("Ed25519 verify setup");
  }
  if (EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(), message.size()) != 1) {
    return UnauthenticatedError("Ed25519 signature does not verify");
  }
  return OkStatus();
}

Result<Key256> AgreeKey(const Key256& private_key, const Key256& peer_public_key,
                        std::span<const uint8_t> info) {
  FRUGAL_ASSIGN_OR_RETURN(X25519Agreement mine, X25519Agreement::Load(private_key));
  return mine.Agree(peer_public_key, info);
}

Result<X25519Agreement> X25519Agreement::Load(const Key256& private_key) {
  FRUGAL_ASSIGN_OR_RETURN(PkeyPtr key, PrivateKeyFromRaw(private_key));
  return X25519Agreement(std::shared_ptr<EVP_PKEY>(key.release(), kPkeyFree));
}

Result<Key256> X25519Agreement::PublicKey() const {
  Key256 pub;
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key_.get(), pub.data(), &len) != 1 || len != pub.size()) {
    return OpenSslFailure("X25519 public key export");
  }
  return pub;
}

Result<Key256> X25519Agreement::Agree(const Key256& peer_public_key, std::span<const uint8_t> info) const {
  PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public_key.data(),
                                           peer_public_key.size()));
  if (!peer) return InvalidArgumentError("not an X25519 public key");
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(key_.get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) return OpenSslFailure("X25519 derive setup");
  // OpenSSL refuses low-order peer points here (the all-zero shared secret).
  if (EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1)
    return InvalidArgumentError("unusable X25519 peer key");
  Key256 shared;
  size_t len = shared.size();
  if (EVP_PKEY_derive(ctx.get(), shared.data(), &len) != 1 || len != shared.size()) {
    return InvalidArgumentError("X25519 agreement failed (low-order peer key)");
  }
  if (std::all_of(shared.begin(), shared.end(), [](uint8_t b) { return b == 0; })) {
    return InvalidArgumentError("X25519 agreement gave the all-zero secret (low-order peer key)");
  }
  auto key = HkdfSha256(shared, {}, info);
  Cleanse(shared);
  return key;
}

std::vector<uint8_t> PairKeyInfo(std::string_view purpose, uint64_t session_id, uint32_t round,
                                 uint32_t a, uint32_t b) {
  static constexpr std::string_view kLabel = "frugal-secagg-v1";
  std::vector<uint8_t> info(kLabel.begin(), kLabel.end());
  // Length-prefixed so no two (purpose, rest) pairs give the same bytes.
  PutU32(info, static_cast<uint32_t>(purpose.size()));
  info.insert(info.end(), purpose.begin(), purpose.end());
  PutU64(info, session_id);
  PutU32(info, round);
  PutU32(info, std::min(a, b));
  PutU32(info, std::max(a, b));
  return info;
}

// ---- AES-256-GCM ------------------------------------------------------------------------

Result<std::vector<uint8_t>> SealShareMessage(const Key256& key, const ShareMessageContext& context,
                                              std::span<const uint8_t> plaintext) {
  if (plaintext.size() > kMaxShareMessageBytes)
    return InvalidArgumentError("share message too long");
  constexpr size_t kTag = 16;
  std::vector<uint8_t> out(kSealOverhead + plaintext.size());
  out[0] = kSealVersion;
  const std::array<uint8_t, 12> iv = ShareNonce(context);
  const std::vector<uint8_t> ad = AssociatedData(context);
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), iv.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, ad.data(), static_cast<int>(ad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data() + 1, &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + 1 + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, out.data() + out.size() - kTag) !=
          1) {
    return OpenSslFailure("AES-256-GCM seal");
  }
  return out;
}

Result<std::vector<uint8_t>> OpenShareMessage(const Key256& key, const ShareMessageContext& context,
                                              std::span<const uint8_t> sealed) {
  constexpr size_t kTag = 16;
  if (sealed.size() < kSealOverhead) return InvalidArgumentError("sealed share message too short");
  if (sealed.size() > kSealOverhead + kMaxShareMessageBytes)
    return InvalidArgumentError("sealed share message too long");
  if (sealed[0] != kSealVersion) return InvalidArgumentError("unknown sealed share message version");
  const std::array<uint8_t, 12> iv = ShareNonce(context);
  const size_t body = sealed.size() - kSealOverhead;
  std::vector<uint8_t> plain(body);
  std::array<uint8_t, kTag> tag;
  std::copy_n(sealed.end() - kTag, kTag, tag.begin());
  const std::vector<uint8_t> ad = AssociatedData(context);
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), iv.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, ad.data(), static_cast<int>(ad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), plain.data(), &len, sealed.data() + 1,
                        static_cast<int>(body)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, tag.data()) != 1) {
    return OpenSslFailure("AES-256-GCM open");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), plain.data() + len, &len) != 1) {
    Cleanse(plain);
    return UnauthenticatedError(
        "share message does not authenticate (tampered, or for another key, session, round "
        "or pair)");
  }
  return plain;
}

// ---- Share bundles ---------------------------------------------------------------------

Result<std::vector<uint8_t>> EncodeShareBundle(const ShareBundle& bundle) {
  const uint32_t x = bundle.recipient + 1;
  for (const ShamirShare* s : {&bundle.mask_key_share, &bundle.self_seed_share}) {
    if (x == 0 || s->x != x || s->y.empty() || s->y.size() > kMaxShareChunks) {
      return InvalidArgumentError("share bundle: a share's point must be recipient + 1 (" + std::to_string(x) +
                                  ", got " + std::to_string(s->x) + ") with 1..16 chunks");
    }
  }
  std::vector<uint8_t> out;
  out.push_back(kBundleVersion);
  for (const ShamirShare* s : {&bundle.mask_key_share, &bundle.self_seed_share}) {
    out.push_back(static_cast<uint8_t>(s->y.size()));
    for (uint64_t y : s->y) PutU64(out, y);
  }
  return out;
}

Result<ShareBundle> DecodeShareBundle(std::span<const uint8_t> bytes, uint32_t sender, uint32_t recipient) {
  Reader r(bytes);
  const auto version = r.Read(1);
  if (!version || *version != kBundleVersion) return InvalidArgumentError("share bundle: unknown version");
  if (recipient + 1 == 0) return InvalidArgumentError("share bundle: recipient out of range");
  ShareBundle bundle;
  bundle.sender = sender;
  bundle.recipient = recipient;
  auto mask_key = ReadShare(r, recipient + 1);
  if (!mask_key) return InvalidArgumentError("share bundle: bad mask-key share");
  auto self_seed = ReadShare(r, recipient + 1);
  if (!self_seed) return InvalidArgumentError("share bundle: bad self-seed share");
  if (!r.done()) return InvalidArgumentError("share bundle: trailing bytes");
  bundle.mask_key_share = std::move(*mask_key);
  bundle.self_seed_share = std::move(*self_seed);
  return bundle;
}

// ---- Masks ---------------------------------------------------------------------------------

Status ExpandMask(const Key256& seed, int bits, std::span<uint64_t> out) {
  if (bits < 1 || bits > 64)
    return InvalidArgumentError("ring bits must be in [1, 64], got " + std::to_string(bits));
  const std::array<uint8_t, 16> iv{};
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ctr(), nullptr, seed.data(), iv.data()) != 1) {
    return OpenSslFailure("AES-256-CTR setup");
  }
  // Encrypting zeros yields the keystream; work in blocks to bound the buffer.
  constexpr size_t kBlockWords = 4096;
  std::array<uint8_t, kBlockWords * 8> zeros{}, stream;
  const uint64_t ring = RingMask(bits);
  for (size_t done = 0; done < out.size();) {
    const size_t words = std::min(kBlockWords, out.size() - done);
    int len = 0;
    if (EVP_EncryptUpdate(ctx.get(), stream.data(), &len, zeros.data(),
                          static_cast<int>(words * 8)) != 1 ||
        static_cast<size_t>(len) != words * 8) {
      return OpenSslFailure("AES-256-CTR keystream");
    }
    for (size_t w = 0; w < words; ++w) {
      uint64_t v = 0;
      for (int b = 0; b < 8; ++b) v |= uint64_t{stream[w * 8 + b]} << (8 * b);
      out[done + w] = v & ring;
    }
    done += words;
  }
  Cleanse(stream);
  return OkStatus();
}

Status ApplyMask(const Key256& seed, int bits, MaskSign sign, std::span<uint64_t> vec) {
  std::vector<uint64_t> mask(vec.size());
  FRUGAL_RETURN_IF_ERROR(ExpandMask(seed, bits, mask));
  const uint64_t ring = RingMask(bits);
  for (size_t i = 0; i < vec.size(); ++i) {
    vec[i] = (sign == MaskSign::kAdd ? vec[i] + mask[i] : vec[i] - mask[i]) & ring;
  }
  return OkStatus();
}

}  // namespace frugal::privacy
