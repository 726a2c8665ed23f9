// Building blocks of SecAgg+ (Bonawitz et al. CCS 2017; Bell et al. CCS 2020):
// Shamir t-of-n sharing over a prime field, the k-regular (Harary) neighbour
// graph and its degree/threshold, X25519 key agreement with HKDF-SHA256,
// AES-256-GCM for share messages bound to their session, round and parties,
// and the AES-256-CTR mask PRG with pairwise and self masks in the ring Z_2^b.
// The four-stage protocol that uses them is not here yet (docs/privacy.md).
// Crypto is OpenSSL's libcrypto; every secret comes from RAND_bytes. All
// functions but ComputeSecAggGraphParameters are thread-safe (no shared
// state); errors are Result/Status, never an abort, for any bytes that came
// from outside.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY

namespace frugal::privacy {

using Key256 = std::array<uint8_t, 32>;

// Fills `out` from OpenSSL's CSPRNG; Internal when it fails (unseeded).
Status RandomBytes(std::span<uint8_t> out);
Result<Key256> RandomKey();
// Overwrites secret bytes in a way the compiler does not elide.
void Cleanse(std::span<uint8_t> secret);

// ---- Shamir secret sharing -------------------------------------------------
// Over GF(p), p = 2^61 − 1 (a Mersenne prime). A secret of any length is cut
// into 7-byte little-endian chunks (56-bit sub-secrets, each < p) and every
// chunk is shared with its own random polynomial of degree t − 1; a share holds
// one field element per chunk. A 32-byte key is 5 sub-secrets, 40 bytes a share.
inline constexpr uint64_t kShamirPrime = (uint64_t{1} << 61) - 1;
inline constexpr size_t kShamirChunkBytes = 7;

// Field arithmetic modulo any prime p < 2^63, exposed so tests can check the
// scheme exhaustively over a small field. Inputs must already be < p.
uint64_t FieldMul(uint64_t a, uint64_t b, uint64_t p);
uint64_t FieldInverse(uint64_t a, uint64_t p);  // a != 0
// Horner evaluation; coefficients[0] is the constant term (the secret).
uint64_t EvaluatePolynomial(std::span<const uint64_t> coefficients, uint64_t x, uint64_t p);
// Lagrange interpolation of the polynomial through (xs[i], ys[i]) at `at`.
// InvalidArgument on mismatched lengths, an empty set or repeated xs.
Result<uint64_t> Interpolate(std::span<const uint64_t> xs, std::span<const uint64_t> ys,
                             uint64_t at, uint64_t p);

struct ShamirShare {
  uint32_t x = 0;           // evaluation point, never 0 (1 + the holder's index, by convention)
  std::vector<uint64_t> y;  // one field element per chunk of the secret

  bool operator==(const ShamirShare&) const = default;
};

// Shares `secret` (1..4096 bytes) t-of-n at the points `xs` (distinct, nonzero),
// 2 <= threshold <= xs.size(). Coefficients from RAND_bytes.
Result<std::vector<ShamirShare>> ShamirSplit(std::span<const uint8_t> secret, uint32_t threshold,
                                             std::span<const uint32_t> xs);
// The secret of `secret_size` bytes from at least `threshold` shares. Shares
// beyond the first `threshold` are checked against the polynomial those define:
// DataLoss when any disagrees or a chunk decodes outside 56 bits (a forged or
// corrupted share); InvalidArgument when there are too few, repeated points, or
// shapes that do not fit the secret size.
Result<std::vector<uint8_t>> ShamirReconstruct(std::span<const ShamirShare> shares,
                                               uint32_t threshold, size_t secret_size);

// ---- SecAgg+ neighbour graph -------------------------------------------------
enum class SecAggAdversary {
  kSemiHonest,     // a curious server that follows the protocol
  kSemiMalicious,  // a server that may lie about which clients dropped out
};

struct SecAggGraphParameters {
  uint32_t clients = 0;
  uint32_t degree = 0;     // neighbours per client (even), k of the Harary graph H(k, n)
  uint32_t threshold = 0;  // Shamir threshold t among a client's k neighbours
};

// Degree k and threshold t for `clients` clients of which at most a fraction
// `corrupt` collude with the server and a fraction `dropout` drop out:
// statistical security 2^-40 and failure probability below 2^-20, by the
// method of Bell et al. 2020 as Google's SecAgg parameter finder applies it
// (the smallest even k whose graph of honest survivors stays connected, then
// the smallest t >= 2 above the corrupt-neighbour quantile and at most the
// survivor quantile). Matches that finder's published table (tests/privacy)
// except where its floor t = 2 passes the survivor quantile (n = 10 at 5%/33%:
// 6/2 here, 4/2 there; docs/privacy.md). Needs
// corrupt + dropout <= 0.9 (semi-honest) or corrupt + 2·dropout <= 0.9
// (semi-malicious), 1 <= clients <= 10^6; FailedPrecondition when no k < n − 1
// works (small n: use the complete graph, plain SecAgg, instead). A planning
// call: it uses std::lgamma, which glibc lets write the global signgam, so call
// it from one thread at a time.
Result<SecAggGraphParameters> ComputeSecAggGraphParameters(
    uint32_t clients, double corrupt, double dropout,
    SecAggAdversary adversary = SecAggAdversary::kSemiHonest);

// The `degree` neighbours of ring position `position` in the Harary graph
// H(degree, n): the positions within degree/2 steps either way, ascending.
// Clients are placed on positions by a random permutation each round (the
// caller's). InvalidArgument unless degree is even, 2 <= degree < n, position < n.
Result<std::vector<uint32_t>> HararyNeighbours(uint32_t n, uint32_t degree, uint32_t position);

// ---- Key agreement -------------------------------------------------------------
struct X25519KeyPair {
  Key256 private_key{};  // secret: Cleanse it when done
  Key256 public_key{};
};

Result<X25519KeyPair> GenerateX25519KeyPair();
Result<Key256> X25519PublicKey(const Key256& private_key);
// HKDF-SHA256 (RFC 5869) of `ikm` to 32 bytes.
Result<Key256> HkdfSha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                          std::span<const uint8_t> info);
// X25519(private, peer) then HKDF-SHA256 with `info`. InvalidArgument when the
// peer key is a low-order point (the shared secret would be all zeros).
Result<Key256> AgreeKey(const Key256& private_key, const Key256& peer_public_key,
                        std::span<const uint8_t> info);

// AgreeKey with the private key imported once, for the k agreements a client
// makes with its neighbours in a stage (and the server with a dropped
// client's neighbours): importing a raw X25519 private key costs a scalar
// multiplication of its own, since OpenSSL derives the public key from it.
// Agree(peer, info) equals AgreeKey(private_key, peer, info).
class X25519Agreement {
 public:
  static Result<X25519Agreement> Load(const Key256& private_key);
  Result<Key256> Agree(const Key256& peer_public_key, std::span<const uint8_t> info) const;
  Result<Key256> PublicKey() const;

 private:
  explicit X25519Agreement(std::shared_ptr<evp_pkey_st> key) : key_(std::move(key)) {}
  std::shared_ptr<evp_pkey_st> key_;  // OpenSSL clears the secret when it frees it
};

// ---- Signatures (Ed25519) --------------------------------------------------------
// A client's per-round signing key for the survivor-list consistency check
// (Bell et al. 2020, after Bonawitz et al. 2017's ConsistencyCheck): it
// advertises the public half with its other keys in stage 1 and signs the
// survivor list the server announces.
using Signature512 = std::array<uint8_t, 64>;
struct Ed25519KeyPair {
  Key256 private_key{};  // the 32-byte seed (RFC 8032); secret: Cleanse it when done
  Key256 public_key{};
};
Result<Ed25519KeyPair> GenerateEd25519KeyPair();
// Ed25519 signature of `message` (pure Ed25519, no prehash).
Result<Signature512> Ed25519Sign(const Key256& private_key, std::span<const uint8_t> message);
// Ok when `signature` verifies on `message` under `public_key`; Unauthenticated
// when it does not, InvalidArgument when the key is not a curve point.
Status Ed25519Verify(const Key256& public_key, std::span<const uint8_t> message, const Signature512& signature);

// HKDF info binding a derived key to its use, session, round and the unordered
// pair {a, b}, so both ends derive the same key and no key is reused across
// rounds: "frugal-secagg-v1" | purpose | session | round | min(a,b) | max(a,b).
std::vector<uint8_t> PairKeyInfo(std::string_view purpose, uint64_t session_id, uint32_t round,
                                 uint32_t a, uint32_t b);

// ---- Share messages in transit (AES-256-GCM) -------------------------------------
struct ShareMessageContext {
  uint64_t session_id = 0;
  uint32_t round = 0;
  uint32_t sender = 0;
  uint32_t recipient = 0;
};

// Sealed layout: version (1 byte, 2) | ciphertext | 16-byte tag. The 12-byte
// GCM nonce is not sent: it is u32 round | u32 sender | u32 recipient (little-
// endian), which the recipient knows. It is unique per key because a channel
// key is derived from both clients' fresh per-round X25519 keys with HKDF info
// binding session, round and the pair (PairKeyInfo), and under it exactly two
// messages are sealed, sender -> recipient and recipient -> sender, whose
// nonces differ. Contract that keeps it so: at most one plaintext per (key,
// context); SecureAggClient::ShareKeys runs once per client and round. (Until
// the eleventh session the layout carried a random 12-byte IV, version 1.)
// The associated data is the version, the context's fields and a label, so a
// message sealed for another session, round, sender or recipient fails to open.
inline constexpr size_t kSealOverhead = 1 + 16;
inline constexpr size_t kMaxShareMessageBytes = 1 << 20;

Result<std::vector<uint8_t>> SealShareMessage(const Key256& key, const ShareMessageContext& context,
                                              std::span<const uint8_t> plaintext);
// The plaintext, or Unauthenticated when the tag does not verify (tampered,
// wrong key or wrong context); InvalidArgument when too short or too long.
Result<std::vector<uint8_t>> OpenShareMessage(const Key256& key, const ShareMessageContext& context,
                                              std::span<const uint8_t> sealed);

// What client `sender` gives neighbour `recipient` in the share-keys stage:
// its shares of the sender's mask-agreement private key and of its self-mask seed.
struct ShareBundle {
  uint32_t sender = 0;
  uint32_t recipient = 0;
  ShamirShare mask_key_share;
  ShamirShare self_seed_share;

  bool operator==(const ShareBundle&) const = default;
};

// Wire form (the plaintext of a sealed share message), little-endian:
// u8 version = 2 | two shares (mask key, self seed), each u8 count | count × u64 y.
// Sender, recipient and the shares' point x = recipient + 1 are not sent: the
// sealed message's authenticated context carries the pair, and the point is
// the one ShareKeys gives each neighbour, so the decoder takes the pair from
// the caller (the context it opened the message under) and restores x.
// InvalidArgument from the encoder when a share's x is not recipient + 1.
// Canonical: the decoder accepts exactly what the encoder writes, so
// 1 <= count <= 16, every y < kShamirPrime, recipient + 1 != 0, and no
// trailing bytes. (Version 1, until the eleventh session, also sent the pair
// and each x: 16 bytes more a bundle.)
Result<std::vector<uint8_t>> EncodeShareBundle(const ShareBundle& bundle);
Result<ShareBundle> DecodeShareBundle(std::span<const uint8_t> bytes, uint32_t sender, uint32_t recipient);

// ---- Masks ----------------------------------------------------------------------
// Uniform elements of Z_2^bits (1 <= bits <= 64), the low `bits` bits of the
// little-endian 64-bit words of the AES-256-CTR keystream keyed by the full
// 256-bit seed (IV zero). A seed is used for one vector only: pairwise seeds
// are derived per round (PairKeyInfo), self-mask seeds drawn per round.
Status ExpandMask(const Key256& seed, int bits, std::span<uint64_t> out);

enum class MaskSign { kAdd, kSubtract };

// vec ± ExpandMask(seed) in Z_2^bits, element by element; vec must hold ring elements.
Status ApplyMask(const Key256& seed, int bits, MaskSign sign, std::span<uint64_t> vec);
// The pairwise mask between clients u and v cancels in the sum because the
// smaller id adds it and the larger subtracts it.
inline MaskSign PairwiseMaskSign(uint32_t self, uint32_t peer) {
  return self < peer ? MaskSign::kAdd : MaskSign::kSubtract;
}
// 2^bits − 1: the mask that reduces a 64-bit word into Z_2^bits.
inline uint64_t RingMask(int bits) { return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

}  // namespace frugal::privacy
