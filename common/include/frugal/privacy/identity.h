// Identities the server cannot mint, for SecAgg+ (closing the key directory's
// Sybil gap, docs/privacy.md "Identity-bound keys"). The fleet's CA, the one
// that issues the clients' mTLS certificates and whose private key the
// operator holds (not the coordinator process), also issues each client a
// compact identity credential: its name (the certificate's CN) and its P-256
// public key (the mTLS key), signed by the CA. Each round a client signs its
// stage-1 advertisement (session, round, position, its X25519 and Ed25519
// keys) with that key; a neighbour trusts the keys only when the credential
// verifies under the CA key from the neighbour's own configuration and the
// advertisement verifies under the credential's key. X.509 would say the
// same in about 500 bytes a certificate; the credential is 98 bytes plus the
// name. P-256 ECDSA with SHA-256 throughout (the fleet CA's curve); keys on
// the wire are SEC1 compressed points, signatures r || s. Thread-safe: no
// shared state; every failure is a Result, never an abort.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY

namespace frugal::privacy {

using P256PublicKey = std::array<uint8_t, 33>;  // SEC1 compressed point
using P256Signature = std::array<uint8_t, 64>;  // ECDSA r || s, big-endian, SHA-256

// A P-256 private key (the CA's or a client's identity key).
class P256Key {
 public:
  static Result<P256Key> Generate();
  // From a 32-byte big-endian scalar in 1..n-1 (a simulated CA or client
  // derives it from its seed, so a simulation repeats); InvalidArgument otherwise.
  static Result<P256Key> FromScalar(std::span<const uint8_t, 32> scalar);
  // From a PEM private key ("PRIVATE KEY" or "EC PRIVATE KEY") held in memory;
  // InvalidArgument when it is not one or not on P-256.
  static Result<P256Key> FromPem(std::string_view pem);

  const P256PublicKey& public_key() const { return public_key_; }
  // ECDSA-SHA256 of `message`, r || s (fresh nonce from OpenSSL).
  Result<P256Signature> Sign(std::span<const uint8_t> message) const;

 private:
  P256Key(std::shared_ptr<evp_pkey_st> key, const P256PublicKey& pub) : key_(std::move(key)), public_key_(pub) {}
  std::shared_ptr<evp_pkey_st> key_;
  P256PublicKey public_key_{};
};

// The P-256 public key of a PEM certificate or public key held in memory (the
// agent's CA certificate); InvalidArgument when there is none or it is not P-256.
Result<P256PublicKey> P256PublicKeyFromPem(std::string_view pem);
// Ok when `signature` is `key`'s ECDSA-SHA256 signature of `message`;
// Unauthenticated when it is not, InvalidArgument when `key` is not a point.
Status P256Verify(const P256PublicKey& key, std::span<const uint8_t> message, const P256Signature& signature);

// The CA's statement "`name` holds `public_key`".
struct IdentityCredential {
  std::string name;  // 1..64 characters of A-Z a-z 0-9 . _ - (a client certificate's CN)
  P256PublicKey public_key{};
  P256Signature ca_signature{};
  bool operator==(const IdentityCredential&) const = default;
};
inline constexpr size_t kMaxIdentityNameBytes = 64;

// True for a name a credential may carry (the CA's client-name rule).
bool ValidIdentityName(std::string_view name);
// What the CA signs: "frugal-identity-v1" | u8 name length | name | public key.
std::vector<uint8_t> IdentityCredentialSigningBytes(std::string_view name, const P256PublicKey& public_key);
// The CA's credential for `name`; InvalidArgument for an invalid name.
Result<IdentityCredential> IssueIdentityCredential(const P256Key& ca, std::string_view name,
                                                   const P256PublicKey& public_key);
// Ok when the CA signed `credential`; Unauthenticated naming the credential's
// name otherwise (another CA, an altered name or key), InvalidArgument for a bad name.
Status VerifyIdentityCredential(const P256PublicKey& ca, const IdentityCredential& credential);

// Wire form inside the SecAgg+ messages: u8 name length | name | 33-byte key |
// 64-byte CA signature (98 + name bytes). AppendIdentityCredential writes it;
// ReadIdentityCredential reads one at bytes[*pos] (advancing *pos) and refuses
// a truncated one, a name outside the rule, or a key that is not a compressed
// point's prefix (0x02 / 0x03), with an error naming the defect.
void AppendIdentityCredential(std::vector<uint8_t>& out, const IdentityCredential& credential);
Result<IdentityCredential> ReadIdentityCredential(std::span<const uint8_t> bytes, size_t* pos);

// The credential file the CA writes beside a client's certificate
// (<dir>/clients/<name>.idc): "FRUGAL-IDC1\n" then the wire form, nothing after.
std::vector<uint8_t> EncodeIdentityCredentialFile(const IdentityCredential& credential);
Result<IdentityCredential> DecodeIdentityCredentialFile(std::span<const uint8_t> bytes);

// What a client brings to a round that binds keys to identities. The CA key
// comes from the client's own configuration (its CA certificate), never from
// the server, which could otherwise certify its own Sybils.
struct SecureIdentity {
  P256PublicKey ca_public{};
  IdentityCredential credential;
  std::shared_ptr<const P256Key> key;  // the private half of credential.public_key
};

// A CA for frugal-sim, benchmarks and tests: its key and each client's
// identity key come from SHA-256 of a label, the seed and the client (so a
// simulation repeats), the client's name is its decimal id. Const after Create.
class SimulatedIdentityAuthority {
 public:
  static Result<SimulatedIdentityAuthority> Create(uint64_t seed);
  const P256PublicKey& ca_public() const { return ca_.public_key(); }
  // Client `client`'s identity: its key, and the credential this CA issues for it.
  Result<SecureIdentity> Issue(uint64_t client) const;
  // Signs a credential for any name and key (tests that forge one).
  const P256Key& ca_key() const { return ca_; }

 private:
  SimulatedIdentityAuthority(P256Key ca, uint64_t seed) : ca_(std::move(ca)), seed_(seed) {}
  P256Key ca_;
  uint64_t seed_ = 0;
};

}  // namespace frugal::privacy
