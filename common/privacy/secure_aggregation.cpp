#include "frugal/privacy/secure_aggregation.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "frugal/codec/frame.h"
#include "frugal/codec/ring_quant.h"
#include "frugal/codec/shared_support.h"
#include "frugal/codec/uplink.h"
#include "frugal/codec/varint.h"
#include "frugal/privacy/secure_pipeline.h"

namespace frugal::privacy {

namespace {

constexpr size_t kMaxSealedShareBytes = 4096;  // a sealed bundle is 100 bytes (32-byte secrets)
constexpr size_t kMaxShareChunks = 16;

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutKey(std::vector<uint8_t>& out, const Key256& k) { out.insert(out.end(), k.begin(), k.end()); }

// Reads from outside bytes; each read checks the length first and says what
// was wrong through `error` (a varint's defect, or truncation).
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  bool Read(size_t width, uint64_t* v) {
    if (bytes_.size() - pos_ < width) return Fail("truncated");
    *v = 0;
    for (size_t i = 0; i < width; ++i) *v |= uint64_t{bytes_[pos_ + i]} << (8 * i);
    pos_ += width;
    return true;
  }
  // A varint no larger than `max`.
  bool Var(uint64_t max, uint64_t* v) {
    const VarintError e = GetVarint(bytes_, &pos_, max, v);
    return e == VarintError::kOk || Fail(VarintErrorText(e));
  }
  bool Var32(uint32_t* v) {
    uint64_t w = 0;
    if (!Var(UINT32_MAX, &w)) return false;
    *v = static_cast<uint32_t>(w);
    return true;
  }
  // The next entry of an ascending list of distinct u32s sent as gaps: the
  // first value, then each gap minus one.
  bool NextAscending(size_t i, uint32_t previous, uint32_t* v) {
    uint64_t g = 0;
    if (!Var(UINT32_MAX, &g)) return false;
    const uint64_t value = i == 0 ? g : uint64_t{previous} + 1 + g;
    if (value > UINT32_MAX) return Fail("position past 2^32 - 1");
    *v = static_cast<uint32_t>(value);
    return true;
  }
  bool Key(Key256* k) {
    if (bytes_.size() - pos_ < k->size()) return Fail("truncated");
    std::copy_n(bytes_.begin() + static_cast<std::ptrdiff_t>(pos_), k->size(), k->begin());
    pos_ += k->size();
    return true;
  }
  template <size_t N>
  bool Bytes(std::array<uint8_t, N>* a) {
    if (bytes_.size() - pos_ < N) return Fail("truncated");
    std::copy_n(bytes_.begin() + static_cast<std::ptrdiff_t>(pos_), N, a->begin());
    pos_ += N;
    return true;
  }
  std::span<const uint8_t> Take(size_t n) {
    if (bytes_.size() - pos_ < n) return {};
    auto s = bytes_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  Result<IdentityCredential> Credential() { return ReadIdentityCredential(bytes_, &pos_); }
  size_t left() const { return bytes_.size() - pos_; }
  bool done() const { return pos_ == bytes_.size(); }
  const std::string& error() const { return error_; }

 private:
  bool Fail(const char* what) {
    error_ = what;
    return false;
  }
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  std::string error_ = "truncated";
};

// Writes an ascending list of distinct values as gaps (see Reader::NextAscending).
class AscendingWriter {
 public:
  explicit AscendingWriter(std::vector<uint8_t>& out) : out_(out) {}
  void Put(uint32_t v) {
    PutVarint(out_, first_ ? v : uint64_t{v} - previous_ - 1);
    first_ = false;
    previous_ = v;
  }

 private:
  std::vector<uint8_t>& out_;
  bool first_ = true;
  uint32_t previous_ = 0;
};

Error Bad(SecureMessageType type, const std::string& what) {
  return InvalidArgumentError("secure aggregation message (type " + std::to_string(static_cast<int>(type)) + "): " +
                              what);
}

void AppendShare(std::vector<uint8_t>& out, const ShamirShare& share) {
  PutVarint(out, share.x);
  out.push_back(static_cast<uint8_t>(share.y.size()));
  for (uint64_t y : share.y) PutU64(out, y);
}

bool ReadShare(Reader& r, ShamirShare* share) {
  uint64_t count = 0;
  if (!r.Var32(&share->x) || !r.Read(1, &count) || share->x == 0 || count == 0 || count > kMaxShareChunks) return false;
  share->y.resize(count);
  for (auto& y : share->y) {
    if (!r.Read(8, &y) || y >= kShamirPrime) return false;
  }
  return true;
}

// Keys, then u8 0 or u8 1 | credential | signature.
void AppendKeys(std::vector<uint8_t>& out, const AdvertisedKeys& k) {
  PutKey(out, k.channel_public);
  PutKey(out, k.mask_public);
  PutKey(out, k.signing_public);
  out.push_back(k.identity ? 1 : 0);
  if (k.identity) {
    AppendIdentityCredential(out, *k.identity);
    out.insert(out.end(), k.identity_signature.begin(), k.identity_signature.end());
  }
}

Status ReadKeys(Reader& r, SecureMessageType t, AdvertisedKeys* k) {
  uint64_t flag = 0;
  if (!r.Key(&k->channel_public) || !r.Key(&k->mask_public) || !r.Key(&k->signing_public) || !r.Read(1, &flag)) {
    return Bad(t, "truncated keys");
  }
  if (flag > 1) return Bad(t, "identity flag " + std::to_string(flag) + " is neither 0 nor 1");
  if (flag == 1) {
    auto c = r.Credential();
    if (!c.ok()) return Bad(t, c.error().message());
    k->identity = std::move(*c);
    if (!r.Bytes(&k->identity_signature)) return Bad(t, "truncated identity signature");
  }
  return OkStatus();
}

Key256 ToKey(std::span<const uint8_t> bytes) {
  Key256 k{};
  std::copy_n(bytes.begin(), std::min(bytes.size(), k.size()), k.begin());
  return k;
}

MaskSign Opposite(MaskSign s) { return s == MaskSign::kAdd ? MaskSign::kSubtract : MaskSign::kAdd; }

std::string Pos(uint32_t p) { return std::to_string(p); }

Error PermissionDeniedError(std::string m) { return {ErrorCode::kPermissionDenied, std::move(m)}; }
Error UnauthenticatedError(std::string m) { return {ErrorCode::kUnauthenticated, std::move(m)}; }

// n bits, bit p of byte p / 8 for each listed position (ascending, each < n;
// a position past n, which no caller passes, is left out rather than written
// past the bitmap).
void PutBitmap(std::vector<uint8_t>& out, uint32_t n, std::span<const uint32_t> positions) {
  const size_t at = out.size();
  out.resize(at + (size_t{n} + 7) / 8, 0);
  for (uint32_t p : positions) {
    if (p < n) out[at + p / 8] |= static_cast<uint8_t>(1u << (p % 8));
  }
}

// Smallest encodings, for the "more entries than bytes" bounds checked before allocating.
constexpr size_t kMinDirectoryEntryBytes = 1 + 3 * 32 + 1;
constexpr size_t kMinShareEntryBytes = 1 + 1 + 1;
constexpr size_t kMinSignatureEntryBytes = 1 + 64;
constexpr size_t kMinRevealedEntryBytes = 1 + 1 + 1 + 1 + 8;

}  // namespace

// ---- Planning ---------------------------------------------------------------------

Status ValidateSecureRoundConfig(const SecureRoundConfig& c) {
  if (c.clients < 3) return InvalidArgumentError("secure round: needs at least 3 clients, has " + Pos(c.clients));
  if (c.degree < 2 || c.degree > c.clients - 1 || (c.degree % 2 != 0 && c.degree != c.clients - 1)) {
    return InvalidArgumentError("secure round: degree " + Pos(c.degree) + " does not fit " + Pos(c.clients) +
                                " clients (even and < n - 1, or n - 1)");
  }
  if (c.threshold < 2 || c.threshold > c.degree) {
    return InvalidArgumentError("secure round: threshold " + Pos(c.threshold) + " outside 2.." + Pos(c.degree));
  }
  if (c.bits < 4 || c.bits > 62) return InvalidArgumentError("secure round: bits " + std::to_string(c.bits) + " outside 4..62");
  if (c.length == 0 || c.length > kMaxSecureVectorEntries) {
    return InvalidArgumentError("secure round: vector length " + Pos(c.length) + " outside 1..2^28");
  }
  return OkStatus();
}

Result<SecureRoundConfig> PlanSecureRound(uint64_t session_id, uint32_t round, uint32_t clients, double corrupt,
                                          double dropout, int bits, uint32_t length) {
  if (clients < 3) return InvalidArgumentError("secure round: needs at least 3 clients, has " + Pos(clients));
  if (!(dropout >= 0 && dropout < 1) || !(corrupt >= 0 && corrupt < 1)) {
    return InvalidArgumentError("secure round: corrupt and dropout fractions must be in [0, 1)");
  }
  SecureRoundConfig cfg{.session_id = session_id, .round = round, .clients = clients, .bits = bits, .length = length};
  auto params = ComputeSecAggGraphParameters(clients, corrupt, dropout);
  if (params.ok()) {
    cfg.degree = params->degree;
    cfg.threshold = params->threshold;
  } else if (params.error().code() == ErrorCode::kFailedPrecondition) {
    cfg.degree = clients - 1;
    const auto t = static_cast<uint32_t>(std::floor((1.0 - dropout) * (clients - 1)));
    cfg.threshold = std::clamp<uint32_t>(t, 2, clients - 1);
  } else {
    return params.error();
  }
  FRUGAL_RETURN_IF_ERROR(ValidateSecureRoundConfig(cfg));
  return cfg;
}

Result<std::vector<uint32_t>> SecureNeighbours(const SecureRoundConfig& cfg, uint32_t position) {
  if (position >= cfg.clients) return InvalidArgumentError("secure round: position " + Pos(position) + " out of range");
  if (cfg.degree + 1 >= cfg.clients) {
    std::vector<uint32_t> all;
    for (uint32_t v = 0; v < cfg.clients; ++v) {
      if (v != position) all.push_back(v);
    }
    return all;
  }
  return HararyNeighbours(cfg.clients, cfg.degree, position);
}

// ---- Wire ---------------------------------------------------------------------------

std::vector<uint8_t> EncodeSecureMessage(const SecureMessage& m) {
  std::vector<uint8_t> out;
  out.push_back(kSecureWireVersion);
  out.push_back(static_cast<uint8_t>(m.header.type));
  PutU64(out, m.header.session_id);
  PutVarint(out, m.header.round);
  PutVarint(out, m.header.party);
  switch (m.header.type) {
    case SecureMessageType::kAdvertiseKeys:
      AppendKeys(out, m.keys);
      break;
    case SecureMessageType::kKeyDirectory: {
      PutVarint(out, m.directory.size());
      AscendingWriter positions(out);
      for (const auto& k : m.directory) {
        positions.Put(k.position);
        AppendKeys(out, k);
      }
      break;
    }
    case SecureMessageType::kShareKeys:
    case SecureMessageType::kShareInbox: {
      PutVarint(out, m.shares.size());
      AscendingWriter peers(out);
      for (const auto& s : m.shares) {
        peers.Put(s.peer);
        PutVarint(out, s.sealed.size());
        out.insert(out.end(), s.sealed.begin(), s.sealed.end());
      }
      break;
    }
    case SecureMessageType::kMaskedInput: {
      out.push_back(m.bits);
      PutVarint(out, m.masked.size());
      const auto packed = PackRing(m.masked, m.bits);
      out.insert(out.end(), packed.begin(), packed.end());
      break;
    }
    case SecureMessageType::kRetiredUnmaskRequest:
      break;  // never sent: the decoder refuses it
    case SecureMessageType::kSurvivorList:
      PutVarint(out, m.clients);
      PutBitmap(out, m.clients, m.survivors);
      break;
    case SecureMessageType::kSurvivorSignature:
      out.insert(out.end(), m.signature.begin(), m.signature.end());
      break;
    case SecureMessageType::kSurvivorSignatures: {
      PutVarint(out, m.signatures.size());
      AscendingWriter signers(out);
      for (const auto& g : m.signatures) {
        signers.Put(g.signer);
        out.insert(out.end(), g.signature.begin(), g.signature.end());
      }
      break;
    }
    case SecureMessageType::kUnmaskResponse: {
      // Owners ascend, each at most twice (one per kind): the gap from the previous owner, 0 allowed.
      PutVarint(out, m.revealed.size());
      uint32_t previous = 0;
      for (const auto& r : m.revealed) {
        PutVarint(out, uint64_t{r.owner} - previous);
        previous = r.owner;
        out.push_back(static_cast<uint8_t>(r.kind));
        AppendShare(out, r.share);
      }
      break;
    }
  }
  return out;
}

Result<SecureMessage> DecodeSecureMessage(std::span<const uint8_t> bytes) {
  Reader r(bytes);
  uint64_t version = 0, type = 0;
  if (!r.Read(1, &version)) return InvalidArgumentError("secure aggregation message: empty");
  if (version == 1) {
    return InvalidArgumentError("secure aggregation message: version 1, the fixed-width format before the thirteenth "
                                "session's varint counts and identity-bound keys; upgrade the peer");
  }
  if (version != kSecureWireVersion) {
    return InvalidArgumentError("secure aggregation message: unknown version " + std::to_string(version));
  }
  if (!r.Read(1, &type) || type < 1 || type > 10) return InvalidArgumentError("secure aggregation message: unknown type");
  if (type == static_cast<uint64_t>(SecureMessageType::kRetiredUnmaskRequest)) {
    return InvalidArgumentError("secure aggregation message (type 6): the unsigned unmask request of the four-stage "
                                "protocol, refused since the twelfth session: unmasking now follows the signed "
                                "survivor list (types 8-10); upgrade the peer");
  }
  SecureMessage m;
  const auto t = static_cast<SecureMessageType>(type);
  m.header.type = t;
  if (!r.Read(8, &m.header.session_id) || !r.Var32(&m.header.round) || !r.Var32(&m.header.party)) {
    return Bad(t, "header: " + r.error());
  }
  auto count_of = [&](size_t min_entry_bytes, uint32_t* count) -> Status {
    if (!r.Var32(count)) return Bad(t, "count: " + r.error());
    if (*count > kMaxSecureListEntries || *count > r.left() / min_entry_bytes) return Bad(t, "more entries than bytes");
    return OkStatus();
  };
  switch (t) {
    case SecureMessageType::kAdvertiseKeys:
      m.keys.position = m.header.party;
      FRUGAL_RETURN_IF_ERROR(ReadKeys(r, t, &m.keys));
      break;
    case SecureMessageType::kKeyDirectory: {
      uint32_t count = 0;
      FRUGAL_RETURN_IF_ERROR(count_of(kMinDirectoryEntryBytes, &count));
      m.directory.resize(count);
      for (uint32_t i = 0; i < count; ++i) {
        auto& k = m.directory[i];
        if (!r.NextAscending(i, i > 0 ? m.directory[i - 1].position : 0, &k.position)) {
          return Bad(t, "entry position: " + r.error());
        }
        FRUGAL_RETURN_IF_ERROR(ReadKeys(r, t, &k));
      }
      break;
    }
    case SecureMessageType::kShareKeys:
    case SecureMessageType::kShareInbox: {
      uint32_t count = 0;
      FRUGAL_RETURN_IF_ERROR(count_of(kMinShareEntryBytes, &count));
      m.shares.resize(count);
      for (uint32_t i = 0; i < count; ++i) {
        auto& s = m.shares[i];
        uint32_t len = 0;
        if (!r.NextAscending(i, i > 0 ? m.shares[i - 1].peer : 0, &s.peer) || !r.Var32(&len)) {
          return Bad(t, "share entry: " + r.error());
        }
        if (len == 0 || len > kMaxSealedShareBytes || len > r.left()) return Bad(t, "share length out of range");
        auto body = r.Take(len);
        s.sealed.assign(body.begin(), body.end());
      }
      break;
    }
    case SecureMessageType::kMaskedInput: {
      uint64_t bits = 0;
      uint32_t count = 0;
      if (!r.Read(1, &bits) || !r.Var32(&count)) return Bad(t, "vector header: " + r.error());
      if (bits < 1 || bits > 64) return Bad(t, "ring bits " + std::to_string(bits) + " outside 1..64");
      if (count > kMaxSecureVectorEntries) return Bad(t, "vector too long");
      m.bits = static_cast<uint8_t>(bits);
      auto values = UnpackRing(r.Take(r.left()), count, m.bits);
      if (!values.ok()) return Bad(t, values.error().message());
      m.masked = std::move(*values);
      break;
    }
    case SecureMessageType::kRetiredUnmaskRequest:
      break;  // refused above
    case SecureMessageType::kSurvivorList: {
      if (!r.Var32(&m.clients)) return Bad(t, "client count: " + r.error());
      if (m.clients == 0 || m.clients > kMaxSecureListEntries) return Bad(t, "client count out of range");
      auto bitmap = r.Take((size_t{m.clients} + 7) / 8);
      if (bitmap.empty()) return Bad(t, "truncated survivor bitmap");
      for (uint32_t p = 0; p < bitmap.size() * 8; ++p) {
        if (((bitmap[p / 8] >> (p % 8)) & 1) == 0) continue;
        if (p >= m.clients) return Bad(t, "survivor bitmap padding not zero");
        m.survivors.push_back(p);
      }
      break;
    }
    case SecureMessageType::kSurvivorSignature:
      if (!r.Bytes(&m.signature)) return Bad(t, "truncated signature");
      break;
    case SecureMessageType::kSurvivorSignatures: {
      uint32_t count = 0;
      FRUGAL_RETURN_IF_ERROR(count_of(kMinSignatureEntryBytes, &count));
      m.signatures.resize(count);
      for (uint32_t i = 0; i < count; ++i) {
        auto& g = m.signatures[i];
        if (!r.NextAscending(i, i > 0 ? m.signatures[i - 1].signer : 0, &g.signer) || !r.Bytes(&g.signature)) {
          return Bad(t, "signature entry: " + r.error());
        }
      }
      break;
    }
    case SecureMessageType::kUnmaskResponse: {
      uint32_t count = 0;
      FRUGAL_RETURN_IF_ERROR(count_of(kMinRevealedEntryBytes, &count));
      m.revealed.resize(count);
      uint32_t previous = 0;
      for (uint32_t i = 0; i < count; ++i) {
        auto& s = m.revealed[i];
        uint64_t gap = 0, kind = 0;
        if (!r.Var(UINT32_MAX, &gap) || !r.Read(1, &kind)) return Bad(t, "revealed-share header: " + r.error());
        if (kind > 1) return Bad(t, "revealed-share kind " + std::to_string(kind) + " is neither 0 nor 1");
        if (uint64_t{previous} + gap > UINT32_MAX) return Bad(t, "owner past 2^32 - 1");
        s.owner = static_cast<uint32_t>(previous + gap);
        previous = s.owner;
        s.kind = static_cast<RevealedKind>(kind);
        if (!ReadShare(r, &s.share)) return Bad(t, "bad revealed share");
        if (i > 0) {
          const auto& p = m.revealed[i - 1];
          if (std::pair(s.owner, s.kind) <= std::pair(p.owner, p.kind)) return Bad(t, "shares not ascending by owner");
        }
      }
      break;
    }
  }
  if (!r.done()) return Bad(t, "trailing bytes");
  return m;
}

std::vector<uint8_t> AdvertisementSigningBytes(uint64_t session_id, uint32_t round, const AdvertisedKeys& keys) {
  static constexpr std::string_view kLabel = "frugal-secagg-advertise-v1";
  std::vector<uint8_t> out(kLabel.begin(), kLabel.end());
  PutU64(out, session_id);
  PutU32(out, round);
  PutU32(out, keys.position);
  PutKey(out, keys.channel_public);
  PutKey(out, keys.mask_public);
  PutKey(out, keys.signing_public);
  return out;
}

Status VerifyAdvertisement(const P256PublicKey& ca, uint64_t session_id, uint32_t round, const AdvertisedKeys& keys) {
  const std::string who = "the keys advertised at position " + Pos(keys.position);
  if (!keys.identity) return UnauthenticatedError(who + " carry no identity credential");
  if (Status st = VerifyIdentityCredential(ca, *keys.identity); !st.ok()) {
    return UnauthenticatedError(who + ": " + st.error().message());
  }
  if (Status st = P256Verify(keys.identity->public_key, AdvertisementSigningBytes(session_id, round, keys),
                             keys.identity_signature);
      !st.ok()) {
    return UnauthenticatedError(who + ": '" + keys.identity->name +
                                "' did not sign these keys for this position, round " + Pos(round) + " and session " +
                                std::to_string(session_id) + " (altered keys, or replayed from another)");
  }
  return OkStatus();
}

std::vector<uint8_t> SurvivorListSigningBytes(uint64_t session_id, uint32_t round, uint32_t clients,
                                              std::span<const uint32_t> survivors) {
  static constexpr std::string_view kLabel = "frugal-secagg-survivors-v1";
  std::vector<uint8_t> out(kLabel.begin(), kLabel.end());
  PutU64(out, session_id);
  PutU32(out, round);
  PutU32(out, clients);
  PutBitmap(out, clients, survivors);
  return out;
}

// ---- Client -----------------------------------------------------------------------------

Result<SecureAggClient> SecureAggClient::Create(const SecureRoundConfig& cfg, uint32_t position,
                                                std::optional<SecureIdentity> identity) {
  FRUGAL_RETURN_IF_ERROR(ValidateSecureRoundConfig(cfg));
  FRUGAL_ASSIGN_OR_RETURN(auto neighbours, SecureNeighbours(cfg, position));
  if (cfg.identity && !identity) {
    return FailedPreconditionError("secure client " + Pos(position) +
                                   ": the round binds keys to identities (secure.identity = \"ca\") and this client "
                                   "has no identity credential");
  }
  if (identity && (!identity->key || identity->key->public_key() != identity->credential.public_key)) {
    return InvalidArgumentError("secure client " + Pos(position) + ": the identity key is not the credential's");
  }
  return SecureAggClient(cfg, position, std::move(neighbours), std::move(identity));
}

Status SecureAggClient::CheckHeader(const SecureMessage& m, SecureMessageType type) const {
  if (m.header.type != type) {
    return InvalidArgumentError("secure client " + Pos(position_) + ": expected message type " +
                                std::to_string(static_cast<int>(type)) + ", got " +
                                std::to_string(static_cast<int>(m.header.type)));
  }
  if (m.header.session_id != cfg_.session_id || m.header.round != cfg_.round) {
    return InvalidArgumentError("secure client " + Pos(position_) + ": message of session " +
                                std::to_string(m.header.session_id) + " round " + Pos(m.header.round) +
                                ", this is session " + std::to_string(cfg_.session_id) + " round " + Pos(cfg_.round));
  }
  if (m.header.party != position_) {
    return InvalidArgumentError("secure client " + Pos(position_) + ": message addressed to " + Pos(m.header.party));
  }
  return OkStatus();
}

Result<std::vector<uint8_t>> SecureAggClient::AdvertiseKeys() {
  if (stage_ != 0) return FailedPreconditionError("secure client: keys already advertised");
  FRUGAL_ASSIGN_OR_RETURN(channel_keys_, GenerateX25519KeyPair());
  FRUGAL_ASSIGN_OR_RETURN(mask_keys_, GenerateX25519KeyPair());
  FRUGAL_ASSIGN_OR_RETURN(signing_keys_, GenerateEd25519KeyPair());
  FRUGAL_ASSIGN_OR_RETURN(self_seed_, RandomKey());
  stage_ = 1;
  SecureMessage m;
  m.header = {SecureMessageType::kAdvertiseKeys, cfg_.session_id, cfg_.round, position_};
  m.keys = {position_, channel_keys_.public_key, mask_keys_.public_key, signing_keys_.public_key, std::nullopt, {}};
  if (identity_) {
    m.keys.identity = identity_->credential;
    FRUGAL_ASSIGN_OR_RETURN(m.keys.identity_signature,
                            identity_->key->Sign(AdvertisementSigningBytes(cfg_.session_id, cfg_.round, m.keys)));
  }
  return EncodeSecureMessage(m);
}

Result<std::vector<uint8_t>> SecureAggClient::ShareKeys(std::span<const uint8_t> key_directory) {
  if (stage_ != 1) return FailedPreconditionError("secure client: share keys out of order");
  FRUGAL_ASSIGN_OR_RETURN(SecureMessage dir, DecodeSecureMessage(key_directory));
  FRUGAL_RETURN_IF_ERROR(CheckHeader(dir, SecureMessageType::kKeyDirectory));
  if (dir.directory.size() < cfg_.threshold) {
    return FailedPreconditionError("secure client " + Pos(position_) + ": " + std::to_string(dir.directory.size()) +
                                   " neighbours advertised keys, threshold is " + Pos(cfg_.threshold));
  }
  std::vector<uint32_t> xs;
  std::set<std::string_view> names;
  if (identity_) names.insert(identity_->credential.name);
  for (const auto& k : dir.directory) {
    if (!std::binary_search(neighbours_.begin(), neighbours_.end(), k.position)) {
      return InvalidArgumentError("secure client " + Pos(position_) + ": key directory names " + Pos(k.position) +
                                  ", not a neighbour");
    }
    if (identity_) {
      // Keys the CA's client did not sign could be the server's own (a Sybil).
      if (Status st = VerifyAdvertisement(identity_->ca_public, cfg_.session_id, cfg_.round, k); !st.ok()) {
        return st.error().WithContext("secure client " + Pos(position_) + ": key directory refused");
      }
      if (!names.insert(k.identity->name).second) {
        return UnauthenticatedError("secure client " + Pos(position_) + ": key directory refused: identity '" +
                                    k.identity->name + "' appears twice (or is this client's own)");
      }
    }
    xs.push_back(k.position + 1);
  }
  FRUGAL_ASSIGN_OR_RETURN(auto key_shares, ShamirSplit(mask_keys_.private_key, cfg_.threshold, xs));
  FRUGAL_ASSIGN_OR_RETURN(auto seed_shares, ShamirSplit(self_seed_, cfg_.threshold, xs));
  SecureMessage out;
  out.header = {SecureMessageType::kShareKeys, cfg_.session_id, cfg_.round, position_};
  std::map<uint32_t, AdvertisedKeys> keys;
  FRUGAL_ASSIGN_OR_RETURN(const X25519Agreement channel_key, X25519Agreement::Load(channel_keys_.private_key));
  for (size_t i = 0; i < dir.directory.size(); ++i) {
    const auto& peer = dir.directory[i];
    FRUGAL_ASSIGN_OR_RETURN(Key256 channel, channel_key.Agree(peer.channel_public,
                                                              PairKeyInfo("channel", cfg_.session_id, cfg_.round,
                                                                          position_, peer.position)));
    const ShareBundle bundle{position_, peer.position, key_shares[i], seed_shares[i]};
    auto plain = EncodeShareBundle(bundle);
    if (!plain.ok()) {
      Cleanse(channel);
      return plain.error();
    }
    auto sealed = SealShareMessage(channel, {cfg_.session_id, cfg_.round, position_, peer.position}, *plain);
    Cleanse(*plain);
    Cleanse(channel);
    if (!sealed.ok()) return sealed.error();
    out.shares.push_back({peer.position, std::move(*sealed)});
    keys[peer.position] = peer;
  }
  peer_keys_ = std::move(keys);
  stage_ = 2;
  return EncodeSecureMessage(out);
}

Result<std::vector<uint8_t>> SecureAggClient::MaskedInput(std::span<const uint8_t> share_inbox,
                                                          std::span<const uint64_t> input) {
  if (stage_ != 2) return FailedPreconditionError("secure client: masked input out of order");
  if (input.size() != cfg_.length) {
    return InvalidArgumentError("secure client: input has " + std::to_string(input.size()) + " entries, round wants " +
                                Pos(cfg_.length));
  }
  const uint64_t ring = RingMask(cfg_.bits);
  for (uint64_t v : input) {
    if (v > ring) return InvalidArgumentError("secure client: input entry outside Z_2^" + std::to_string(cfg_.bits));
  }
  FRUGAL_ASSIGN_OR_RETURN(SecureMessage inbox, DecodeSecureMessage(share_inbox));
  FRUGAL_RETURN_IF_ERROR(CheckHeader(inbox, SecureMessageType::kShareInbox));
  if (inbox.shares.size() < cfg_.threshold) {
    return FailedPreconditionError("secure client " + Pos(position_) + ": shares from " +
                                   std::to_string(inbox.shares.size()) + " neighbours, threshold is " +
                                   Pos(cfg_.threshold));
  }
  std::map<uint32_t, ShareBundle> received;
  FRUGAL_ASSIGN_OR_RETURN(const X25519Agreement channel_key, X25519Agreement::Load(channel_keys_.private_key));
  for (const auto& s : inbox.shares) {
    auto peer = peer_keys_.find(s.peer);
    if (peer == peer_keys_.end()) {
      return InvalidArgumentError("secure client " + Pos(position_) + ": shares from " + Pos(s.peer) +
                                  ", which is not in its key directory");
    }
    FRUGAL_ASSIGN_OR_RETURN(Key256 channel, channel_key.Agree(peer->second.channel_public,
                                                              PairKeyInfo("channel", cfg_.session_id, cfg_.round,
                                                                          position_, s.peer)));
    auto plain = OpenShareMessage(channel, {cfg_.session_id, cfg_.round, s.peer, position_}, s.sealed);
    Cleanse(channel);
    if (!plain.ok()) return plain.error().WithContext("secure client " + Pos(position_) + ": share from " + Pos(s.peer));
    auto decoded = DecodeShareBundle(*plain, s.peer, position_);
    Cleanse(*plain);
    FRUGAL_ASSIGN_OR_RETURN(ShareBundle bundle, std::move(decoded));
    if (bundle.sender != s.peer || bundle.recipient != position_ || bundle.mask_key_share.x != position_ + 1 ||
        bundle.self_seed_share.x != position_ + 1) {
      return InvalidArgumentError("secure client " + Pos(position_) + ": bundle from " + Pos(s.peer) +
                                  " names the wrong pair or point");
    }
    received[s.peer] = std::move(bundle);
  }
  std::vector<uint64_t> y(input.begin(), input.end());
  FRUGAL_RETURN_IF_ERROR(ApplyMask(self_seed_, cfg_.bits, MaskSign::kAdd, y));
  std::vector<uint32_t> masked_with;
  FRUGAL_ASSIGN_OR_RETURN(const X25519Agreement mask_key, X25519Agreement::Load(mask_keys_.private_key));
  for (const auto& [peer, bundle] : received) {
    FRUGAL_ASSIGN_OR_RETURN(Key256 pair, mask_key.Agree(peer_keys_[peer].mask_public,
                                                        PairKeyInfo("mask", cfg_.session_id, cfg_.round, position_, peer)));
    const Status st = ApplyMask(pair, cfg_.bits, PairwiseMaskSign(position_, peer), y);
    Cleanse(pair);
    FRUGAL_RETURN_IF_ERROR(st);
    masked_with.push_back(peer);
  }
  received_ = std::move(received);
  masked_with_ = std::move(masked_with);
  Cleanse(mask_keys_.private_key);
  Cleanse(channel_keys_.private_key);
  stage_ = 3;
  SecureMessage out;
  out.header = {SecureMessageType::kMaskedInput, cfg_.session_id, cfg_.round, position_};
  out.bits = static_cast<uint8_t>(cfg_.bits);
  out.masked = std::move(y);
  Cleanse(self_seed_);
  return EncodeSecureMessage(out);
}

Result<std::vector<uint8_t>> SecureAggClient::SignSurvivors(std::span<const uint8_t> survivor_list) {
  if (stage_ >= 4) {
    return PermissionDeniedError("secure client " + Pos(position_) +
                                 ": already signed a survivor list this round; a second could split the survivors");
  }
  if (stage_ != 3) return FailedPreconditionError("secure client: consistency check out of order");
  FRUGAL_ASSIGN_OR_RETURN(SecureMessage list, DecodeSecureMessage(survivor_list));
  FRUGAL_RETURN_IF_ERROR(CheckHeader(list, SecureMessageType::kSurvivorList));
  if (list.clients != cfg_.clients) {
    return PermissionDeniedError("secure client " + Pos(position_) + ": a survivor list over " + Pos(list.clients) +
                                 " clients, the round has " + Pos(cfg_.clients));
  }
  auto listed = [&](uint32_t p) { return std::binary_search(list.survivors.begin(), list.survivors.end(), p); };
  if (!listed(position_)) {
    return PermissionDeniedError("secure client " + Pos(position_) + ": the survivor list leaves this client out");
  }
  std::vector<uint32_t> survivors, dropped;
  for (const auto& [p, _] : received_) (listed(p) ? survivors : dropped).push_back(p);
  // This client survived too; fewer than t survivors would let the server
  // unmask (nearly) one input.
  if (survivors.size() + 1 < cfg_.threshold) {
    return PermissionDeniedError("secure client " + Pos(position_) + ": only " + std::to_string(survivors.size() + 1) +
                                 " survivors, threshold is " + Pos(cfg_.threshold));
  }
  std::vector<uint8_t> bytes = SurvivorListSigningBytes(cfg_.session_id, cfg_.round, cfg_.clients, list.survivors);
  auto sig = Ed25519Sign(signing_keys_.private_key, bytes);
  Cleanse(signing_keys_.private_key);
  if (!sig.ok()) return sig.error();
  signed_list_ = std::move(bytes);
  survivors_ = std::move(survivors);
  dropped_ = std::move(dropped);
  stage_ = 4;
  SecureMessage out;
  out.header = {SecureMessageType::kSurvivorSignature, cfg_.session_id, cfg_.round, position_};
  out.signature = *sig;
  return EncodeSecureMessage(out);
}

Result<std::vector<uint8_t>> SecureAggClient::Unmask(std::span<const uint8_t> survivor_signatures) {
  if (stage_ == 5) {
    return PermissionDeniedError("secure client " + Pos(position_) +
                                 ": already answered an unmask request this round; a second could draw both shares");
  }
  if (stage_ != 4) return FailedPreconditionError("secure client: unmask out of order");
  FRUGAL_ASSIGN_OR_RETURN(SecureMessage req, DecodeSecureMessage(survivor_signatures));
  FRUGAL_RETURN_IF_ERROR(CheckHeader(req, SecureMessageType::kSurvivorSignatures));
  size_t valid = 0;
  for (const auto& g : req.signatures) {
    // Only a surviving neighbour's key counts: the directory gave this client no other.
    if (!std::binary_search(survivors_.begin(), survivors_.end(), g.signer)) {
      return PermissionDeniedError("secure client " + Pos(position_) + ": a signature from " + Pos(g.signer) +
                                   ", not a neighbour the signed list names a survivor");
    }
    if (Status st = Ed25519Verify(peer_keys_[g.signer].signing_public, signed_list_, g.signature); !st.ok()) {
      return PermissionDeniedError("secure client " + Pos(position_) + ": the signature of " + Pos(g.signer) +
                                   " does not verify on the survivor list this client signed (a forged or "
                                   "inconsistent list): " + st.error().message());
    }
    ++valid;
  }
  if (valid < cfg_.threshold) {
    return PermissionDeniedError("secure client " + Pos(position_) + ": " + std::to_string(valid) +
                                 " neighbours signed the survivor list, threshold is " + Pos(cfg_.threshold));
  }
  SecureMessage out;
  out.header = {SecureMessageType::kUnmaskResponse, cfg_.session_id, cfg_.round, position_};
  // Ascending by owner: the two lists are disjoint, so merge them.
  std::map<uint32_t, RevealedShare> by_owner;
  for (uint32_t p : survivors_) by_owner[p] = {p, RevealedKind::kSelfSeed, received_[p].self_seed_share};
  for (uint32_t p : dropped_) by_owner[p] = {p, RevealedKind::kMaskKey, received_[p].mask_key_share};
  for (auto& [p, r] : by_owner) out.revealed.push_back(std::move(r));
  stage_ = 5;
  received_.clear();
  return EncodeSecureMessage(out);
}

// ---- Server ---------------------------------------------------------------------------------

Result<SecureAggServer> SecureAggServer::Create(const SecureRoundConfig& cfg, std::optional<P256PublicKey> identity_ca) {
  FRUGAL_RETURN_IF_ERROR(ValidateSecureRoundConfig(cfg));
  SecureAggServer s(cfg, identity_ca);
  s.neighbours_.resize(cfg.clients);
  for (uint32_t u = 0; u < cfg.clients; ++u) {
    FRUGAL_ASSIGN_OR_RETURN(s.neighbours_[u], SecureNeighbours(cfg, u));
  }
  return s;
}

Status SecureAggServer::Accept(uint32_t from, int stage, SecureMessageType type, std::span<const uint8_t> bytes,
                               SecureMessage* out) {
  if (stage_ != stage) {
    return FailedPreconditionError("secure server: message type " + std::to_string(static_cast<int>(type)) +
                                   " outside its stage");
  }
  if (from >= cfg_.clients) return InvalidArgumentError("secure server: sender " + Pos(from) + " is not in the round");
  FRUGAL_ASSIGN_OR_RETURN(*out, DecodeSecureMessage(bytes));
  const auto& h = out->header;
  if (h.type != type) return InvalidArgumentError("secure server: wrong message type for this stage");
  if (h.session_id != cfg_.session_id || h.round != cfg_.round) {
    return InvalidArgumentError("secure server: message of session " + std::to_string(h.session_id) + " round " +
                                Pos(h.round) + ", this is session " + std::to_string(cfg_.session_id) + " round " +
                                Pos(cfg_.round));
  }
  if (h.party != from) return InvalidArgumentError("secure server: " + Pos(from) + " sent a message signed " + Pos(h.party));
  return OkStatus();
}

Status SecureAggServer::Live(size_t count, const char* stage) const {
  if (count < cfg_.threshold + 1) {
    return FailedPreconditionError("secure round " + Pos(cfg_.round) + " aborted: " + std::to_string(count) +
                                   " clients left after " + stage + ", fewer than threshold + 1 = " +
                                   Pos(cfg_.threshold + 1));
  }
  return OkStatus();
}

Status SecureAggServer::OnAdvertiseKeys(uint32_t from, std::span<const uint8_t> bytes,
                                        std::string_view expected_identity) {
  SecureMessage m;
  FRUGAL_RETURN_IF_ERROR(Accept(from, 0, SecureMessageType::kAdvertiseKeys, bytes, &m));
  if (keys_.contains(from)) return InvalidArgumentError("secure server: duplicate keys from " + Pos(from));
  if (cfg_.identity && !m.keys.identity) {
    return UnauthenticatedError("secure server: " + Pos(from) + " advertised keys without an identity credential, "
                                "which secure.identity = \"ca\" requires");
  }
  if (m.keys.identity && !expected_identity.empty() && m.keys.identity->name != expected_identity) {
    return PermissionDeniedError("secure server: " + Pos(from) + ", authenticated as '" +
                                 std::string(expected_identity) + "', advertised the identity of '" +
                                 m.keys.identity->name + "'");
  }
  if (identity_ca_ && m.keys.identity) {
    if (Status st = VerifyAdvertisement(*identity_ca_, cfg_.session_id, cfg_.round, m.keys); !st.ok()) {
      return st.error().WithContext("secure server");
    }
  }
  if (m.keys.channel_public == m.keys.mask_public || m.keys.signing_public == m.keys.channel_public ||
      m.keys.signing_public == m.keys.mask_public) {
    return InvalidArgumentError("secure server: " + Pos(from) + " advertised one key for two uses");
  }
  keys_[from] = m.keys;
  return OkStatus();
}

Result<std::map<uint32_t, std::vector<uint8_t>>> SecureAggServer::CloseAdvertiseKeys() {
  if (stage_ != 0) return FailedPreconditionError("secure server: advertise-keys stage already closed");
  FRUGAL_RETURN_IF_ERROR(Live(keys_.size(), "advertising keys"));
  std::map<uint32_t, std::vector<uint8_t>> out;
  for (const auto& [u, k] : keys_) {
    SecureMessage m;
    m.header = {SecureMessageType::kKeyDirectory, cfg_.session_id, cfg_.round, u};
    for (uint32_t v : neighbours_[u]) {
      if (auto it = keys_.find(v); it != keys_.end()) m.directory.push_back(it->second);
    }
    if (m.directory.size() >= cfg_.threshold) out[u] = EncodeSecureMessage(m);
  }
  stage_ = 1;
  return out;
}

Status SecureAggServer::OnShareKeys(uint32_t from, std::span<const uint8_t> bytes) {
  SecureMessage m;
  FRUGAL_RETURN_IF_ERROR(Accept(from, 1, SecureMessageType::kShareKeys, bytes, &m));
  if (outgoing_.contains(from)) return InvalidArgumentError("secure server: duplicate shares from " + Pos(from));
  if (!keys_.contains(from)) return InvalidArgumentError("secure server: shares from " + Pos(from) + ", which advertised no keys");
  for (const auto& s : m.shares) {
    if (!keys_.contains(s.peer) || !std::binary_search(neighbours_[from].begin(), neighbours_[from].end(), s.peer)) {
      return InvalidArgumentError("secure server: " + Pos(from) + " sent a share to " + Pos(s.peer) +
                                  ", not a neighbour with keys");
    }
  }
  if (m.shares.size() < cfg_.threshold) {
    return InvalidArgumentError("secure server: " + Pos(from) + " sent " + std::to_string(m.shares.size()) +
                                " shares, threshold is " + Pos(cfg_.threshold));
  }
  outgoing_[from] = std::move(m.shares);
  return OkStatus();
}

Result<std::map<uint32_t, std::vector<uint8_t>>> SecureAggServer::CloseShareKeys() {
  if (stage_ != 1) return FailedPreconditionError("secure server: share-keys stage not open");
  FRUGAL_RETURN_IF_ERROR(Live(outgoing_.size(), "sharing keys"));
  std::map<uint32_t, SecureMessage> inbox;
  for (const auto& [u, _] : outgoing_) {
    inbox[u].header = {SecureMessageType::kShareInbox, cfg_.session_id, cfg_.round, u};
  }
  for (const auto& [u, shares] : outgoing_) {  // ascending u, so each inbox stays ascending
    for (const auto& s : shares) {
      if (auto it = inbox.find(s.peer); it != inbox.end()) it->second.shares.push_back({u, s.sealed});
    }
  }
  std::map<uint32_t, std::vector<uint8_t>> out;
  for (const auto& [u, m] : inbox) {
    if (m.shares.size() >= cfg_.threshold) out[u] = EncodeSecureMessage(m);
  }
  stage_ = 2;
  return out;
}

Status SecureAggServer::OnMaskedInput(uint32_t from, std::span<const uint8_t> bytes) {
  SecureMessage m;
  FRUGAL_RETURN_IF_ERROR(Accept(from, 2, SecureMessageType::kMaskedInput, bytes, &m));
  if (masked_.contains(from)) return InvalidArgumentError("secure server: duplicate masked input from " + Pos(from));
  if (!outgoing_.contains(from)) {
    return InvalidArgumentError("secure server: masked input from " + Pos(from) + ", which shared no keys");
  }
  if (m.bits != cfg_.bits || m.masked.size() != cfg_.length) {
    return InvalidArgumentError("secure server: masked input from " + Pos(from) + " has " +
                                std::to_string(m.masked.size()) + " entries of " + std::to_string(m.bits) +
                                " bits, the round wants " + Pos(cfg_.length) + " of " + std::to_string(cfg_.bits));
  }
  masked_[from] = std::move(m.masked);
  return OkStatus();
}

Result<std::map<uint32_t, std::vector<uint8_t>>> SecureAggServer::CloseMaskedInput() {
  if (stage_ != 2) return FailedPreconditionError("secure server: masked-input stage not open");
  FRUGAL_RETURN_IF_ERROR(Live(masked_.size(), "masked input"));
  // One list for everyone: whoever signs it signs the same bytes.
  SecureMessage m;
  m.clients = cfg_.clients;
  for (const auto& [u, _] : masked_) m.survivors.push_back(u);
  survivor_list_ = SurvivorListSigningBytes(cfg_.session_id, cfg_.round, cfg_.clients, m.survivors);
  std::map<uint32_t, std::vector<uint8_t>> out;
  for (const auto& [u, _] : masked_) {
    m.header = {SecureMessageType::kSurvivorList, cfg_.session_id, cfg_.round, u};
    out[u] = EncodeSecureMessage(m);
  }
  stage_ = 3;
  return out;
}

Status SecureAggServer::OnSurvivorSignature(uint32_t from, std::span<const uint8_t> bytes) {
  SecureMessage m;
  FRUGAL_RETURN_IF_ERROR(Accept(from, 3, SecureMessageType::kSurvivorSignature, bytes, &m));
  if (signatures_.contains(from)) return InvalidArgumentError("secure server: duplicate signature from " + Pos(from));
  if (!masked_.contains(from)) return InvalidArgumentError("secure server: signature from " + Pos(from) + ", not a survivor");
  if (Status st = Ed25519Verify(keys_[from].signing_public, survivor_list_, m.signature); !st.ok()) {
    return InvalidArgumentError("secure server: the signature of " + Pos(from) + " does not verify on the survivor list");
  }
  signatures_[from] = m.signature;
  return OkStatus();
}

Result<std::map<uint32_t, std::vector<uint8_t>>> SecureAggServer::CloseSurvivorSignatures() {
  if (stage_ != 3) return FailedPreconditionError("secure server: consistency-check stage not open");
  FRUGAL_RETURN_IF_ERROR(Live(signatures_.size(), "signing the survivor list"));
  std::map<uint32_t, std::vector<uint8_t>> out;
  for (const auto& [u, _] : signatures_) {
    SecureMessage m;
    m.header = {SecureMessageType::kSurvivorSignatures, cfg_.session_id, cfg_.round, u};
    for (uint32_t v : neighbours_[u]) {
      // u counts only neighbours whose shares it holds (v shared keys with u's key in its directory).
      if (!outgoing_.contains(v)) continue;
      if (auto it = signatures_.find(v); it != signatures_.end()) m.signatures.push_back({v, it->second});
      // t are what u needs; more would only cost it bytes and verifications.
      if (m.signatures.size() == cfg_.threshold) break;
    }
    if (m.signatures.size() >= cfg_.threshold) out[u] = EncodeSecureMessage(m);
  }
  stage_ = 4;
  return out;
}

Status SecureAggServer::OnUnmaskResponse(uint32_t from, std::span<const uint8_t> bytes) {
  SecureMessage m;
  FRUGAL_RETURN_IF_ERROR(Accept(from, 4, SecureMessageType::kUnmaskResponse, bytes, &m));
  if (responses_.contains(from)) return InvalidArgumentError("secure server: duplicate unmask response from " + Pos(from));
  if (!signatures_.contains(from)) {
    return InvalidArgumentError("secure server: unmask response from " + Pos(from) + ", which did not sign the survivor list");
  }
  for (const auto& r : m.revealed) {
    const bool survivor = masked_.contains(r.owner);
    const bool dropped = !survivor && outgoing_.contains(r.owner);
    const bool right_kind = (survivor && r.kind == RevealedKind::kSelfSeed) || (dropped && r.kind == RevealedKind::kMaskKey);
    if (!right_kind || r.share.x != from + 1 ||
        !std::binary_search(neighbours_[from].begin(), neighbours_[from].end(), r.owner)) {
      return InvalidArgumentError("secure server: " + Pos(from) + " revealed a share of " + Pos(r.owner) +
                                  " that was not asked for");
    }
  }
  responses_[from] = std::move(m.revealed);
  return OkStatus();
}

Result<SecureAggregate> SecureAggServer::Finish() {
  if (stage_ != 4) return FailedPreconditionError("secure server: unmasking stage not open");
  stage_ = 5;
  std::map<uint32_t, std::vector<ShamirShare>> seed_shares, key_shares;
  for (const auto& [from, revealed] : responses_) {
    for (const auto& r : revealed) {
      (r.kind == RevealedKind::kSelfSeed ? seed_shares : key_shares)[r.owner].push_back(r.share);
    }
  }
  SecureAggregate out;
  out.sum.assign(cfg_.length, 0);
  const uint64_t ring = RingMask(cfg_.bits);
  for (const auto& [u, y] : masked_) {
    for (size_t i = 0; i < y.size(); ++i) out.sum[i] = (out.sum[i] + y[i]) & ring;
    out.survivors.push_back(u);
  }
  for (uint32_t u : out.survivors) {
    auto seed = ShamirReconstruct(seed_shares[u], cfg_.threshold, 32);
    if (!seed.ok()) {
      return FailedPreconditionError("secure round " + Pos(cfg_.round) + " aborted: the self mask of " + Pos(u) +
                                     " cannot be removed: " + seed.error().message());
    }
    Key256 b = ToKey(*seed);
    const Status st = ApplyMask(b, cfg_.bits, MaskSign::kSubtract, out.sum);
    Cleanse(b);
    FRUGAL_RETURN_IF_ERROR(st);
  }
  for (const auto& [d, _] : outgoing_) {
    if (masked_.contains(d)) continue;
    out.dropped.push_back(d);
    auto key = ShamirReconstruct(key_shares[d], cfg_.threshold, 32);
    if (!key.ok()) {
      return FailedPreconditionError("secure round " + Pos(cfg_.round) + " aborted: the pairwise masks of dropped " +
                                     Pos(d) + " cannot be removed: " + key.error().message());
    }
    Key256 sk = ToKey(*key);
    auto loaded = X25519Agreement::Load(sk);
    Cleanse(sk);
    if (!loaded.ok()) return loaded.error();
    const X25519Agreement& mask_key = *loaded;
    FRUGAL_ASSIGN_OR_RETURN(Key256 pk, mask_key.PublicKey());
    if (pk != keys_[d].mask_public) {
      return DataLossError("secure round " + Pos(cfg_.round) + ": the rebuilt mask key of " + Pos(d) +
                           " does not match the one it advertised (a forged share)");
    }
    for (uint32_t v : neighbours_[d]) {
      // v masked with d exactly when v survived and d's shares reached it.
      if (!masked_.contains(v)) continue;
      FRUGAL_ASSIGN_OR_RETURN(Key256 pair,
                              mask_key.Agree(keys_[v].mask_public, PairKeyInfo("mask", cfg_.session_id, cfg_.round, d, v)));
      const Status st = ApplyMask(pair, cfg_.bits, Opposite(PairwiseMaskSign(v, d)), out.sum);
      Cleanse(pair);
      FRUGAL_RETURN_IF_ERROR(st);
    }
  }
  return out;
}

}  // namespace frugal::privacy

// ---- Pipeline parameters (frugal/privacy/secure_pipeline.h) ------------------------------

namespace frugal::privacy {

Status CheckSecurePipelineConfig(const SecurePipelineConfig& cfg) {
  if (Status st = ValidateRingQuantConfig(cfg.ring); !st.ok()) {
    return st.error().WithContext("[secure] bits, clip, max_clients");
  }
  if (cfg.ring.bits > 62) return InvalidArgumentError("secure.bits must be at most 62");
  if (!(cfg.corrupt >= 0 && cfg.corrupt < 1)) return InvalidArgumentError("secure.corrupt must be in [0, 1)");
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) return InvalidArgumentError("secure.dropout must be in [0, 1)");
  if (cfg.corrupt + cfg.dropout > 0.9) return InvalidArgumentError("secure.corrupt + secure.dropout must be at most 0.9");
  if (!(cfg.guided >= 0 && cfg.guided <= 1)) return InvalidArgumentError("secure.guided must be in [0, 1]");
  if (cfg.guided > 0 && (cfg.guide_rounds == 0 || cfg.guide_rounds > 4096)) {
    return InvalidArgumentError("secure.guide_rounds must be in 1..4096");
  }
  if (!(cfg.guide_decay > 0 && cfg.guide_decay <= 1)) return InvalidArgumentError("secure.guide_decay must be in (0, 1]");
  if (cfg.guide_block == 0 || cfg.guide_block > 0xffff) return InvalidArgumentError("secure.guide_block must be in 1..65535");
  if (!(std::isfinite(cfg.step_scale) && cfg.step_scale > 0 && cfg.step_scale <= 1000)) {
    return InvalidArgumentError("secure.step_scale must be in (0, 1000]");
  }
  return OkStatus();
}

Result<std::vector<uint32_t>> RoundSupport(const SecurePipelineConfig& cfg, uint32_t round, size_t dim,
                                           double density) {
  return SharedSupport(SharedSupportSeed(cfg.support_seed, round), dim, density);
}

Result<std::vector<uint32_t>> RoundSupport(const SecurePipelineConfig& cfg, uint32_t round, size_t dim,
                                           double density, std::span<const uint32_t> guide) {
  if (!(density > 0.0 && density <= 1.0)) {
    return InvalidArgumentError("shared support: density " + std::to_string(density) + " outside (0, 1]");
  }
  if (dim == 0 || dim > kMaxCodecDim) {
    return InvalidArgumentError("shared support: dimension " + std::to_string(dim) + " outside 1.." +
                                std::to_string(kMaxCodecDim));
  }
  return GuidedSupport(SharedSupportSeed(cfg.support_seed, round), dim, UplinkKeepCount(density, dim), guide);
}

std::vector<uint32_t> GuideBlocksFromSteps(std::span<const SparseUpdate> steps, uint32_t dim,
                                           const SecurePipelineConfig& cfg, double density) {
  if (cfg.guided <= 0 || steps.empty() || dim == 0 || cfg.guide_block == 0) return {};
  const uint32_t block = cfg.guide_block;
  std::vector<float> score((dim + block - 1) / block, 0.0f);
  double weight = 1;
  size_t used = 0;
  // Newest step first: the steps are the broadcast every client receives, so
  // the guide is a post-processing of what the server has already released.
  for (auto it = steps.rbegin(); it != steps.rend() && used < cfg.guide_rounds; ++it, ++used) {
    for (size_t j = 0; j < it->indices.size(); ++j) {
      score[it->indices[j] / block] += static_cast<float>(weight * std::fabs(it->values[j]));
    }
    weight *= cfg.guide_decay;
  }
  const size_t m = std::min(UplinkKeepCount(cfg.guided, dim), UplinkKeepCount(density, dim));
  return TopScoreCoordinates(score, m / block);
}

StepSupportFn StepSupportsFromHistory(std::span<const SparseUpdate> history, const SecurePipelineConfig& cfg,
                                      double density, uint32_t dim) {
  const size_t n = cfg.guide_rounds;
  std::vector<SparseUpdate> kept(history.size() > n ? history.end() - static_cast<std::ptrdiff_t>(n) : history.begin(),
                                 history.end());
  return [kept = std::move(kept), cfg, density, dim, n](uint32_t round,
                                                        std::span<const SparseUpdate> before) -> Result<StepSupport> {
    if (cfg.guided <= 0 || n == 0) {
      return FailedPreconditionError("merged steps v4: supports need a guided secure pipeline (secure.guided > 0)");
    }
    if (kept.size() + before.size() < n) {
      return FailedPreconditionError("round " + std::to_string(round) + "'s guide needs the " + std::to_string(n) +
                                     " steps before it; the client holds " +
                                     std::to_string(kept.size() + before.size()));
    }
    std::vector<SparseUpdate> last;
    last.reserve(n);
    const size_t from_kept = before.size() >= n ? 0 : n - before.size();
    last.insert(last.end(), kept.end() - static_cast<std::ptrdiff_t>(from_kept), kept.end());
    last.insert(last.end(), before.end() - static_cast<std::ptrdiff_t>(n - from_kept), before.end());
    const std::vector<uint32_t> blocks = GuideBlocksFromSteps(last, dim, cfg, density);
    StepSupport s;
    s.guide = ExpandGuideBlocks(blocks, dim, cfg.guide_block);
    FRUGAL_ASSIGN_OR_RETURN(s.support, RoundSupport(cfg, round, dim, density, s.guide));
    return s;
  };
}

}  // namespace frugal::privacy
