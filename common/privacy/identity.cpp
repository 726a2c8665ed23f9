#include "frugal/privacy/identity.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>

#include "frugal/core/openssl_error.h"
#include "openssl_ptr.h"

namespace frugal::privacy {
namespace {

Error UnauthenticatedError(std::string m) { return {ErrorCode::kUnauthenticated, std::move(m)}; }

char kGroupName[] = "prime256v1";
constexpr std::string_view kCredentialLabel = "frugal-identity-v1";
constexpr std::string_view kFileMagic = "FRUGAL-IDC1\n";

bool IsP256(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC") != 1) return false;
  char group[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) return false;
  return std::string_view(group, len) == "prime256v1";
}

// The compressed point of `key`'s public key.
Result<P256PublicKey> CompressedPublic(EVP_PKEY* key) {
  uint8_t buf[65];
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, buf, sizeof buf, &len) != 1) {
    return OpenSslFailure("exporting a P-256 public key");
  }
  P256PublicKey out{};
  if (len == 65 && buf[0] == 0x04) {
    out[0] = static_cast<uint8_t>(0x02 | (buf[64] & 1));
    std::copy_n(buf + 1, 32, out.begin() + 1);
  } else if (len == 33 && (buf[0] == 0x02 || buf[0] == 0x03)) {
    std::copy_n(buf, 33, out.begin());
  } else {
    return InternalError("a P-256 public key of unexpected form");
  }
  return out;
}

// An EVP_PKEY from the group and a public point (and optionally the private scalar).
Result<PkeyPtr> FromData(std::span<const uint8_t> point, const BIGNUM* priv) {
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, kGroupName, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1 ||
      (priv != nullptr && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv) != 1)) {
    return OpenSslFailure("building P-256 key parameters");
  }
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, priv != nullptr ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    return InvalidArgumentError("not a P-256 point");
  }
  return PkeyPtr(raw);
}

Result<PkeyPtr> PublicFromCompressed(const P256PublicKey& key) {
  if (key[0] != 0x02 && key[0] != 0x03) return InvalidArgumentError("not a compressed P-256 point");
  return FromData(key, nullptr);
}

}  // namespace

Result<P256Key> P256Key::Generate() {
  PkeyPtr key(EVP_EC_gen(kGroupName));
  if (!key) return OpenSslFailure("generating a P-256 key");
  FRUGAL_ASSIGN_OR_RETURN(P256PublicKey pub, CompressedPublic(key.get()));
  return P256Key(std::shared_ptr<EVP_PKEY>(key.release(), kPkeyFree), pub);
}

Result<P256Key> P256Key::FromScalar(std::span<const uint8_t, 32> scalar) {
  EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
  BnPtr d(BN_bin2bn(scalar.data(), 32, nullptr));
  if (!group || !d) return OpenSslFailure("P-256 scalar");
  if (BN_is_zero(d.get()) || BN_cmp(d.get(), EC_GROUP_get0_order(group.get())) >= 0) {
    return InvalidArgumentError("P-256 scalar outside 1..n-1");
  }
  EcPointPtr q(EC_POINT_new(group.get()));
  uint8_t point[65];
  if (!q || EC_POINT_mul(group.get(), q.get(), d.get(), nullptr, nullptr, nullptr) != 1 ||
      EC_POINT_point2oct(group.get(), q.get(), POINT_CONVERSION_UNCOMPRESSED, point, sizeof point, nullptr) != 65) {
    return OpenSslFailure("P-256 public point");
  }
  FRUGAL_ASSIGN_OR_RETURN(PkeyPtr key, FromData(point, d.get()));
  FRUGAL_ASSIGN_OR_RETURN(P256PublicKey pub, CompressedPublic(key.get()));
  return P256Key(std::shared_ptr<EVP_PKEY>(key.release(), kPkeyFree), pub);
}

Result<P256Key> P256Key::FromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslFailure("reading a PEM key");
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!key) return InvalidArgumentError("not a PEM private key");
  if (!IsP256(key.get())) return InvalidArgumentError("the private key is not on P-256");
  FRUGAL_ASSIGN_OR_RETURN(P256PublicKey pub, CompressedPublic(key.get()));
  return P256Key(std::shared_ptr<EVP_PKEY>(key.release(), kPkeyFree), pub);
}

Result<P256Signature> P256Key::Sign(std::span<const uint8_t> message) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1) {
    return OpenSslFailure("ECDSA sign setup");
  }
  uint8_t der[80];
  size_t len = sizeof der;
  if (EVP_DigestSign(ctx.get(), der, &len, message.data(), message.size()) != 1) return OpenSslFailure("ECDSA sign");
  const uint8_t* p = der;
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len)));
  if (!sig) return OpenSslFailure("ECDSA signature form");
  P256Signature out{};
  if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out.data(), 32) != 32 ||
      BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out.data() + 32, 32) != 32) {
    return OpenSslFailure("ECDSA signature export");
  }
  return out;
}

Result<P256PublicKey> P256PublicKeyFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslFailure("reading PEM");
  PkeyPtr key;
  if (X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)); cert) {
    EVP_PKEY* k = X509_get_pubkey(cert.get());  // a new reference
    key.reset(k);
  } else {
    bio.reset(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (bio) key.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  }
  ERR_clear_error();
  if (!key) return InvalidArgumentError("neither a PEM certificate nor a PEM public key");
  if (!IsP256(key.get())) return InvalidArgumentError("the key is not on P-256");
  return CompressedPublic(key.get());
}

Status P256Verify(const P256PublicKey& key, std::span<const uint8_t> message, const P256Signature& signature) {
  FRUGAL_ASSIGN_OR_RETURN(PkeyPtr pkey, PublicFromCompressed(key));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BnPtr r(BN_bin2bn(signature.data(), 32, nullptr)), s(BN_bin2bn(signature.data() + 32, 32, nullptr));
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return OpenSslFailure("ECDSA signature");
  r.release();  // owned by sig now
  s.release();
  uint8_t der[80];
  uint8_t* p = der;
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0 || len > static_cast<int>(sizeof der) || i2d_ECDSA_SIG(sig.get(), &p) != len) {
    return OpenSslFailure("ECDSA signature form");
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey.get()) != 1) {
    return OpenSslFailure("ECDSA verify setup");
  }
  const int ok = EVP_DigestVerify(ctx.get(), der, static_cast<size_t>(len), message.data(), message.size());
  ERR_clear_error();
  if (ok != 1) return UnauthenticatedError("ECDSA P-256 signature does not verify");
  return OkStatus();
}

bool ValidIdentityName(std::string_view name) {
  if (name.empty() || name.size() > kMaxIdentityNameBytes) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

std::vector<uint8_t> IdentityCredentialSigningBytes(std::string_view name, const P256PublicKey& public_key) {
  std::vector<uint8_t> out(kCredentialLabel.begin(), kCredentialLabel.end());
  out.push_back(static_cast<uint8_t>(name.size()));
  out.insert(out.end(), name.begin(), name.end());
  out.insert(out.end(), public_key.begin(), public_key.end());
  return out;
}

Result<IdentityCredential> IssueIdentityCredential(const P256Key& ca, std::string_view name,
                                                   const P256PublicKey& public_key) {
  if (!ValidIdentityName(name)) {
    return InvalidArgumentError("identity name '" + std::string(name) + "' must be 1-64 characters of A-Z a-z 0-9 . _ -");
  }
  IdentityCredential c{std::string(name), public_key, {}};
  FRUGAL_ASSIGN_OR_RETURN(c.ca_signature, ca.Sign(IdentityCredentialSigningBytes(name, public_key)));
  return c;
}

Status VerifyIdentityCredential(const P256PublicKey& ca, const IdentityCredential& credential) {
  if (!ValidIdentityName(credential.name)) return InvalidArgumentError("identity credential: invalid name");
  Status st = P256Verify(ca, IdentityCredentialSigningBytes(credential.name, credential.public_key),
                         credential.ca_signature);
  if (!st.ok()) {
    return UnauthenticatedError("identity credential of '" + credential.name +
                                "' is not signed by this client's CA (another CA, or an altered name or key)");
  }
  return OkStatus();
}

void AppendIdentityCredential(std::vector<uint8_t>& out, const IdentityCredential& c) {
  out.push_back(static_cast<uint8_t>(c.name.size()));
  out.insert(out.end(), c.name.begin(), c.name.end());
  out.insert(out.end(), c.public_key.begin(), c.public_key.end());
  out.insert(out.end(), c.ca_signature.begin(), c.ca_signature.end());
}

Result<IdentityCredential> ReadIdentityCredential(std::span<const uint8_t> bytes, size_t* pos) {
  size_t at = *pos;
  if (at >= bytes.size()) return InvalidArgumentError("identity credential: truncated name length");
  const size_t len = bytes[at++];
  if (len == 0 || len > kMaxIdentityNameBytes) return InvalidArgumentError("identity credential: name length out of range");
  if (bytes.size() - at < len + 33 + 64) return InvalidArgumentError("identity credential: truncated");
  IdentityCredential c;
  c.name.assign(reinterpret_cast<const char*>(bytes.data() + at), len);
  at += len;
  if (!ValidIdentityName(c.name)) return InvalidArgumentError("identity credential: name outside A-Z a-z 0-9 . _ -");
  std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(at), 33, c.public_key.begin());
  at += 33;
  if (c.public_key[0] != 0x02 && c.public_key[0] != 0x03) {
    return InvalidArgumentError("identity credential: the key is not a compressed P-256 point");
  }
  std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(at), 64, c.ca_signature.begin());
  at += 64;
  *pos = at;
  return c;
}

std::vector<uint8_t> EncodeIdentityCredentialFile(const IdentityCredential& credential) {
  std::vector<uint8_t> out(kFileMagic.begin(), kFileMagic.end());
  AppendIdentityCredential(out, credential);
  return out;
}

Result<IdentityCredential> DecodeIdentityCredentialFile(std::span<const uint8_t> bytes) {
  if (bytes.size() < kFileMagic.size() || !std::equal(kFileMagic.begin(), kFileMagic.end(), bytes.begin())) {
    return InvalidArgumentError("identity credential file: not a FRUGAL-IDC1 file");
  }
  size_t pos = kFileMagic.size();
  auto c = ReadIdentityCredential(bytes, &pos);
  if (!c.ok()) return c.error().WithContext("identity credential file");
  if (pos != bytes.size()) return InvalidArgumentError("identity credential file: trailing bytes");
  return c;
}

namespace {

// A key whose scalar is SHA-256(label | seed | who | attempt), the first attempt in range.
Result<P256Key> DerivedKey(uint64_t seed, uint64_t who) {
  for (uint8_t attempt = 0; attempt < 16; ++attempt) {
    std::vector<uint8_t> in = {'f', 'r', 'u', 'g', 'a', 'l', '-', 's', 'i', 'm', '-', 'i', 'd'};
    for (int i = 0; i < 8; ++i) in.push_back(static_cast<uint8_t>(seed >> (8 * i)));
    for (int i = 0; i < 8; ++i) in.push_back(static_cast<uint8_t>(who >> (8 * i)));
    in.push_back(attempt);
    std::array<uint8_t, 32> scalar{};
    unsigned int len = 0;
    if (EVP_Digest(in.data(), in.size(), scalar.data(), &len, EVP_sha256(), nullptr) != 1 || len != 32) {
      return OpenSslFailure("SHA-256");
    }
    auto key = P256Key::FromScalar(scalar);
    if (key.ok()) return key;
  }
  return InternalError("no P-256 scalar in range after 16 attempts");
}

}  // namespace

Result<SimulatedIdentityAuthority> SimulatedIdentityAuthority::Create(uint64_t seed) {
  FRUGAL_ASSIGN_OR_RETURN(P256Key ca, DerivedKey(seed, ~uint64_t{0}));
  return SimulatedIdentityAuthority(std::move(ca), seed);
}

Result<SecureIdentity> SimulatedIdentityAuthority::Issue(uint64_t client) const {
  if (client == ~uint64_t{0}) return InvalidArgumentError("simulated CA: client id 2^64 - 1 is the CA's");
  FRUGAL_ASSIGN_OR_RETURN(P256Key key, DerivedKey(seed_, client));
  SecureIdentity id;
  id.ca_public = ca_.public_key();
  FRUGAL_ASSIGN_OR_RETURN(id.credential, IssueIdentityCredential(ca_, std::to_string(client), key.public_key()));
  id.key = std::make_shared<const P256Key>(std::move(key));
  return id;
}

}  // namespace frugal::privacy
