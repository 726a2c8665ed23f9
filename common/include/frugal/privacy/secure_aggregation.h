// The SecAgg+ protocol (Bell et al. CCS 2020) as I/O-free state machines, one
// for a client and one for the server, over the building blocks of secagg.h.
// Five stages: advertise keys, share keys, masked input, consistency check
// (every survivor signs the survivor list the server announced), unmasking
// (a client reveals shares only against t of its neighbours' signatures on
// the list it signed, so the server cannot show two lists). The front
// ends (simulator, coordinator, agent) only move the encoded messages and say
// when a stage's deadline has passed; whoever has not answered by then has
// dropped out. Parties are ring positions 0..n-1 of the round's Harary graph
// (the front end places its selected clients on positions).
//
// Each client holds two X25519 key pairs: c for the channel that carries its
// shares to a neighbour, s for its pairwise masks, and an Ed25519 pair for
// the consistency check (advertised with them); only s's private key is
// Shamir-shared, so rebuilding a dropped client's mask key never opens the
// share messages its neighbours sent it. Not thread-safe: one caller per object.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/privacy/identity.h"
#include "frugal/privacy/secagg.h"

namespace frugal::privacy {

// What every party of one round agrees on before it starts.
struct SecureRoundConfig {
  uint64_t session_id = 0;
  uint32_t round = 0;
  uint32_t clients = 0;    // n: positions 0..n-1
  uint32_t degree = 0;     // neighbours per client; n - 1: the complete graph (plain SecAgg)
  uint32_t threshold = 0;  // Shamir t: shares needed to rebuild a seed or key
  int bits = 32;           // ring Z_2^bits of the masked vector
  uint32_t length = 0;     // entries of the masked vector (the shared support's size)
  // Every client's stage-1 keys are bound to a CA-certified identity
  // (secure.identity = "ca"): the server refuses an advertisement without
  // one. A client checks its neighbours' whenever it holds a SecureIdentity,
  // whatever this says (the server cannot switch that check off).
  bool identity = false;
};

// Degree and threshold for n clients with the tolerated corrupt and dropout
// fractions: ComputeSecAggGraphParameters where a k < n - 1 exists, else the
// complete graph with t = floor((1 - dropout) * (n - 1)) (at least 2, at most
// n - 1) so that the tolerated fraction of dropouts still leaves t neighbours.
// InvalidArgument for n < 3 (two clients' sum reveals each input to the other)
// or fractions out of range. Planning call, one thread at a time (lgamma).
Result<SecureRoundConfig> PlanSecureRound(uint64_t session_id, uint32_t round, uint32_t clients, double corrupt,
                                          double dropout, int bits, uint32_t length);
// Ok when the fields fit together (3 <= n, 2 <= t <= degree <= n - 1, degree
// even or n - 1, 4 <= bits <= 62 (bits <= 64 for the masks alone), length >= 1).
Status ValidateSecureRoundConfig(const SecureRoundConfig& cfg);
// The neighbours of `position`, ascending: Harary H(degree, n), or all others.
Result<std::vector<uint32_t>> SecureNeighbours(const SecureRoundConfig& cfg, uint32_t position);

// ---- Wire messages -----------------------------------------------------------
// Canonical encodings: u8 version = 2 | u8 type | u64 session (little-endian)
// | varint round | varint party (the sender of a client message, the
// recipient of a server message) | body. Counts, positions and lengths are
// varints (frugal/codec/varint.h); an ascending list of distinct positions is
// sent as its first value, then each gap minus one. Each decoder accepts
// exactly what its encoder writes and nothing else (counts bounded, varints
// minimal, lists ascending and distinct, no trailing bytes); InvalidArgument
// names the defect. Version 1 (fixed-width u32 fields, until the thirteenth
// session) and the retired type 6 are refused with an error that says so.
// Keys in kAdvertiseKeys and each kKeyDirectory entry are followed by u8 0, or
// u8 1 | the identity credential (identity.h) | the 64-byte ECDSA signature of
// AdvertisementSigningBytes by the credential's key.
enum class SecureMessageType : uint8_t {
  kAdvertiseKeys = 1,  // client -> server: its two X25519 public keys and its Ed25519 key
  kKeyDirectory = 2,   // server -> client: its neighbours' public keys
  kShareKeys = 3,      // client -> server: one sealed ShareBundle per neighbour
  kShareInbox = 4,     // server -> client: the sealed bundles its neighbours sent it
  kMaskedInput = 5,    // client -> server: the masked ring vector, bit-packed
  kRetiredUnmaskRequest = 6,  // refused: the unsigned survivor list of the four-stage protocol
  kUnmaskResponse = 7, // client -> server: a self-seed share per survivor, a mask-key share per dropped
  kSurvivorList = 8,        // server -> client: every position whose masked input arrived (a bitmap)
  kSurvivorSignature = 9,   // client -> server: its Ed25519 signature on that list
  kSurvivorSignatures = 10, // server -> client: its neighbours' signatures on the list
};

struct SecureHeader {
  SecureMessageType type = SecureMessageType::kAdvertiseKeys;
  uint64_t session_id = 0;
  uint32_t round = 0;
  uint32_t party = 0;
};

struct AdvertisedKeys {
  uint32_t position = 0;
  Key256 channel_public{};
  Key256 mask_public{};
  Key256 signing_public{};  // Ed25519, for the consistency check
  // The CA-certified identity and its signature on this advertisement (when bound).
  std::optional<IdentityCredential> identity;
  P256Signature identity_signature{};
  bool operator==(const AdvertisedKeys&) const = default;
};

struct SealedShare {
  uint32_t peer = 0;  // recipient in kShareKeys, sender in kShareInbox
  std::vector<uint8_t> sealed;
  bool operator==(const SealedShare&) const = default;
};

enum class RevealedKind : uint8_t { kSelfSeed = 0, kMaskKey = 1 };
struct RevealedShare {
  uint32_t owner = 0;  // whose secret this is a share of
  RevealedKind kind = RevealedKind::kSelfSeed;
  ShamirShare share;
  bool operator==(const RevealedShare&) const = default;
};

struct SurvivorSignature {
  uint32_t signer = 0;
  Signature512 signature{};
  bool operator==(const SurvivorSignature&) const = default;
};

// One struct for the messages; only the fields of `header.type` are used.
struct SecureMessage {
  SecureHeader header;
  AdvertisedKeys keys;                   // kAdvertiseKeys (keys.position == header.party)
  std::vector<AdvertisedKeys> directory; // kKeyDirectory, ascending positions
  std::vector<SealedShare> shares;       // kShareKeys, kShareInbox, ascending peers
  uint8_t bits = 0;                      // kMaskedInput
  std::vector<uint64_t> masked;          // kMaskedInput, each < 2^bits
  uint32_t clients = 0;                  // kSurvivorList: n, the bitmap's length in bits
  std::vector<uint32_t> survivors;       // kSurvivorList, ascending, each < clients
  Signature512 signature{};              // kSurvivorSignature
  std::vector<SurvivorSignature> signatures;  // kSurvivorSignatures, ascending signers
  std::vector<RevealedShare> revealed;   // kUnmaskResponse, ascending (owner, kind)
};

inline constexpr uint32_t kMaxSecureListEntries = 1u << 16;    // neighbours, shares
inline constexpr uint32_t kMaxSecureVectorEntries = 1u << 28;  // masked entries

inline constexpr uint8_t kSecureWireVersion = 2;

std::vector<uint8_t> EncodeSecureMessage(const SecureMessage& message);
Result<SecureMessage> DecodeSecureMessage(std::span<const uint8_t> bytes);

// The bytes a client signs in the consistency check: "frugal-secagg-survivors-v1"
// | u64 session | u32 round | u32 n | the survivor bitmap (bit p of byte p / 8
// set for each survivor p < n), so a signature holds for one list of one round.
std::vector<uint8_t> SurvivorListSigningBytes(uint64_t session_id, uint32_t round, uint32_t clients,
                                              std::span<const uint32_t> survivors);

// What a client's identity key signs in stage 1: "frugal-secagg-advertise-v1"
// | u64 session | u32 round | u32 position | channel | mask | signing key
// (little-endian), so the keys hold for one position of one round of one session.
std::vector<uint8_t> AdvertisementSigningBytes(uint64_t session_id, uint32_t round, const AdvertisedKeys& keys);
// Ok when `keys` carries a credential the CA `ca` signed and the credential's
// key signed this advertisement for (session, round); Unauthenticated naming
// the position and what failed (no credential, another CA or an altered
// credential, a signature of other keys, position, round or session).
Status VerifyAdvertisement(const P256PublicKey& ca, uint64_t session_id, uint32_t round, const AdvertisedKeys& keys);

// ---- Client ---------------------------------------------------------------------
// Drives one client through the four stages; each call must come in order and
// once (FailedPrecondition otherwise). A message of another session, round,
// recipient or stage is refused (InvalidArgument / Unauthenticated) and leaves
// the client where it was, so a front end may drop it and wait for the right one.
class SecureAggClient {
 public:
  // With `identity` the client binds its stage-1 keys to its credential and
  // accepts a neighbour's keys only when VerifyAdvertisement holds for them
  // under identity->ca_public and no two carry one name (nor this client's).
  // FailedPrecondition when cfg.identity asks for an identity and none is given.
  static Result<SecureAggClient> Create(const SecureRoundConfig& cfg, uint32_t position,
                                        std::optional<SecureIdentity> identity = std::nullopt);

  // Stage 1: fresh key pairs and self-mask seed; the kAdvertiseKeys message.
  Result<std::vector<uint8_t>> AdvertiseKeys();
  // Stage 2: from the server's kKeyDirectory (at least t neighbours, each a
  // neighbour of this position, keys not low-order, and with an identity each
  // advertisement verified: Unauthenticated otherwise), the kShareKeys message.
  Result<std::vector<uint8_t>> ShareKeys(std::span<const uint8_t> key_directory);
  // Stage 3: from the kShareInbox (every bundle opens under its channel key and
  // names the right pair; at least t), masks `input` (length entries of
  // Z_2^bits) with the self mask and one pairwise mask per neighbour whose
  // shares arrived; the kMaskedInput message.
  Result<std::vector<uint8_t>> MaskedInput(std::span<const uint8_t> share_inbox, std::span<const uint64_t> input);
  // Stage 4: from the server's kSurvivorList, the kSurvivorSignature on it.
  // Its neighbours that sent it shares are survivors when listed, dropped
  // otherwise. Refuses (PermissionDenied) a list of another size than the
  // round's, one that leaves this client out, or one with fewer than t
  // survivors counting this client; signs at most one list per round.
  Result<std::vector<uint8_t>> SignSurvivors(std::span<const uint8_t> survivor_list);
  // Stage 5: from the kSurvivorSignatures, the kUnmaskResponse: a self-seed
  // share per surviving neighbour, a mask-key share per dropped one. Refuses
  // (PermissionDenied) unless at least t distinct neighbours that the list
  // names survivors signed the very list this client signed; any signature
  // that does not verify on it (a forged or inconsistent list) is refused
  // outright. Answers once per round, so no second request can draw the
  // other share of a neighbour.
  Result<std::vector<uint8_t>> Unmask(std::span<const uint8_t> survivor_signatures);

  uint32_t position() const { return position_; }
  // Neighbours whose pairwise masks this client applied (after stage 3).
  const std::vector<uint32_t>& masked_with() const { return masked_with_; }

 private:
  SecureAggClient(SecureRoundConfig cfg, uint32_t position, std::vector<uint32_t> neighbours,
                  std::optional<SecureIdentity> identity)
      : cfg_(cfg), position_(position), neighbours_(std::move(neighbours)), identity_(std::move(identity)) {}
  Status CheckHeader(const SecureMessage& m, SecureMessageType type) const;

  SecureRoundConfig cfg_;
  uint32_t position_ = 0;
  std::vector<uint32_t> neighbours_;
  std::optional<SecureIdentity> identity_;
  int stage_ = 0;  // calls made so far
  X25519KeyPair channel_keys_, mask_keys_;
  Ed25519KeyPair signing_keys_;
  Key256 self_seed_{};
  std::map<uint32_t, AdvertisedKeys> peer_keys_;
  std::map<uint32_t, ShareBundle> received_;  // bundles neighbours sent this client, by sender
  std::vector<uint32_t> masked_with_;
  std::vector<uint8_t> signed_list_;  // the survivor list's signing bytes (after stage 4)
  std::vector<uint32_t> survivors_, dropped_;  // neighbours with shares, by that list
};

// ---- Server -----------------------------------------------------------------------
struct SecureAggregate {
  std::vector<uint64_t> sum;        // the survivors' inputs summed in Z_2^bits
  std::vector<uint32_t> survivors;  // positions whose inputs are in the sum, ascending
  std::vector<uint32_t> dropped;    // shared keys but sent no input (their masks removed)
};

// Relays and checks the clients' messages and unmasks the sum. On<Stage>(from,
// bytes) accepts one message of the open stage from position `from` (refused,
// with the state unchanged, when it is malformed, of another session, round,
// stage or sender, or a duplicate); Close<Stage>() ends the stage at its
// deadline and returns the message for each client still in the protocol, by
// position. The server verifies each survivor's signature on the one list it
// announced and relays to each survivor t of its neighbours' signatures (the
// lowest positions that signed; t are all a client checks for). A stage
// that leaves fewer than t + 1 clients fails the round
// (FailedPrecondition); so does Finish when a survivor's self seed or a
// dropped client's mask key cannot be rebuilt from t shares (too many
// dropouts in unmasking) or a rebuilt key does not match its advertised one.
class SecureAggServer {
 public:
  // With `identity_ca` (the fleet CA's key) the server also verifies every
  // advertisement's identity (VerifyAdvertisement) before relaying it; with
  // cfg.identity it refuses an advertisement without one.
  static Result<SecureAggServer> Create(const SecureRoundConfig& cfg,
                                        std::optional<P256PublicKey> identity_ca = std::nullopt);

  // `expected_identity` (when not empty): the name the front end authenticated
  // for `from` (its mTLS CN, or the simulated client's); an advertisement whose
  // credential names another is refused (PermissionDenied).
  Status OnAdvertiseKeys(uint32_t from, std::span<const uint8_t> bytes, std::string_view expected_identity = {});
  Result<std::map<uint32_t, std::vector<uint8_t>>> CloseAdvertiseKeys();
  Status OnShareKeys(uint32_t from, std::span<const uint8_t> bytes);
  Result<std::map<uint32_t, std::vector<uint8_t>>> CloseShareKeys();
  Status OnMaskedInput(uint32_t from, std::span<const uint8_t> bytes);
  Result<std::map<uint32_t, std::vector<uint8_t>>> CloseMaskedInput();
  Status OnSurvivorSignature(uint32_t from, std::span<const uint8_t> bytes);
  Result<std::map<uint32_t, std::vector<uint8_t>>> CloseSurvivorSignatures();
  Status OnUnmaskResponse(uint32_t from, std::span<const uint8_t> bytes);
  Result<SecureAggregate> Finish();

  const SecureRoundConfig& config() const { return cfg_; }

 private:
  SecureAggServer(SecureRoundConfig cfg, std::optional<P256PublicKey> identity_ca)
      : cfg_(cfg), identity_ca_(identity_ca) {}
  Status Accept(uint32_t from, int stage, SecureMessageType type, std::span<const uint8_t> bytes, SecureMessage* out);
  Status Live(size_t count, const char* stage) const;

  SecureRoundConfig cfg_;
  std::optional<P256PublicKey> identity_ca_;
  std::vector<std::vector<uint32_t>> neighbours_;
  int stage_ = 0;
  std::map<uint32_t, AdvertisedKeys> keys_;                       // U1
  std::map<uint32_t, std::vector<SealedShare>> outgoing_;         // U2: sender -> sealed shares
  std::map<uint32_t, std::vector<uint64_t>> masked_;              // U3
  std::vector<uint8_t> survivor_list_;                            // the signing bytes of U3's list
  std::map<uint32_t, Signature512> signatures_;                   // U4: survivors that signed it
  std::map<uint32_t, std::vector<RevealedShare>> responses_;      // U5
};

}  // namespace frugal::privacy
