// Identity-bound SecAgg+ keys (frugal/privacy/identity.h): the P-256 pieces,
// the CA's compact credential, and the protocol refusing every advertisement
// a server could forge (another CA, altered keys, another round or session,
// one identity at two positions, a client posing as another).
#include "frugal/privacy/identity.h"

#include <doctest/doctest.h>

#include <numeric>
#include <string>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/privacy/secure_aggregation.h"

namespace frugal::privacy {
namespace {

std::vector<uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }

bool Says(const Status& st, std::string_view what) {
  return !st.ok() && st.error().message().find(what) != std::string::npos;
}
template <typename T>
bool Says(const Result<T>& r, std::string_view what) {
  return !r.ok() && r.error().message().find(what) != std::string::npos;
}

// One identity-bound round of n clients up to the key directories.
struct BoundRound {
  SecureRoundConfig cfg;
  SimulatedIdentityAuthority ca;
  std::vector<SecureIdentity> ids;
  std::vector<SecureAggClient> clients;
  std::map<uint32_t, std::vector<uint8_t>> directories;
};

BoundRound Advertised(uint32_t n, uint64_t seed = 1) {
  auto cfg = PlanSecureRound(77, 3, n, 0.05, 0.33, 16, 8);
  REQUIRE(cfg.ok());
  cfg->identity = true;
  auto ca = SimulatedIdentityAuthority::Create(seed);
  REQUIRE(ca.ok());
  BoundRound b{*cfg, *ca, {}, {}, {}};
  auto server = SecureAggServer::Create(b.cfg, b.ca.ca_public());
  REQUIRE(server.ok());
  for (uint32_t u = 0; u < n; ++u) {
    auto id = b.ca.Issue(100 + u);
    REQUIRE(id.ok());
    b.ids.push_back(*id);
    auto c = SecureAggClient::Create(b.cfg, u, *id);
    REQUIRE(c.ok());
    auto msg = c->AdvertiseKeys();
    REQUIRE(msg.ok());
    REQUIRE(server->OnAdvertiseKeys(u, *msg, std::to_string(100 + u)).ok());
    b.clients.push_back(std::move(*c));
  }
  auto dirs = server->CloseAdvertiseKeys();
  REQUIRE(dirs.ok());
  b.directories = std::move(*dirs);
  return b;
}

TEST_SUITE("privacy_identity") {

TEST_CASE("P-256: signatures verify under their key only, keys from a scalar repeat") {
  std::array<uint8_t, 32> scalar{};
  scalar[31] = 7;
  auto a = P256Key::FromScalar(scalar);
  auto b = P256Key::FromScalar(scalar);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->public_key() == b->public_key());
  CHECK((a->public_key()[0] == 0x02 || a->public_key()[0] == 0x03));
  auto other = P256Key::Generate();
  REQUIRE(other.ok());
  const auto msg = Bytes("frugal");
  auto sig = a->Sign(msg);
  REQUIRE(sig.ok());
  CHECK(P256Verify(a->public_key(), msg, *sig).ok());
  CHECK(P256Verify(other->public_key(), msg, *sig).error().code() == ErrorCode::kUnauthenticated);
  auto flipped = *sig;
  flipped[5] ^= 1;
  CHECK(!P256Verify(a->public_key(), msg, flipped).ok());
  CHECK(!P256Verify(a->public_key(), Bytes("frugaL"), *sig).ok());
  std::array<uint8_t, 32> zero{};
  CHECK(!P256Key::FromScalar(zero).ok());
  std::array<uint8_t, 32> past_n;
  past_n.fill(0xff);
  CHECK(!P256Key::FromScalar(past_n).ok());
  P256PublicKey not_a_point{};
  not_a_point[0] = 0x04;
  CHECK(P256Verify(not_a_point, msg, *sig).error().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("a CA credential verifies under its CA only, and its file form is strict") {
  auto ca = SimulatedIdentityAuthority::Create(5);
  auto other_ca = SimulatedIdentityAuthority::Create(6);
  REQUIRE(ca.ok());
  REQUIRE(other_ca.ok());
  auto id = ca->Issue(42);
  REQUIRE(id.ok());
  CHECK(id->credential.name == "42");
  CHECK(id->key->public_key() == id->credential.public_key);
  CHECK(VerifyIdentityCredential(ca->ca_public(), id->credential).ok());
  CHECK(Says(VerifyIdentityCredential(other_ca->ca_public(), id->credential), "not signed by this client's CA"));
  IdentityCredential renamed = id->credential;
  renamed.name = "43";
  CHECK(!VerifyIdentityCredential(ca->ca_public(), renamed).ok());
  IdentityCredential rekeyed = id->credential;
  rekeyed.public_key = other_ca->ca_public();
  CHECK(!VerifyIdentityCredential(ca->ca_public(), rekeyed).ok());
  CHECK(!IssueIdentityCredential(ca->ca_key(), "bad name", id->credential.public_key).ok());
  // The same client of the same seed gets the same credential key (a simulation repeats).
  CHECK(ca->Issue(42)->credential.public_key == id->credential.public_key);

  auto file = EncodeIdentityCredentialFile(id->credential);
  CHECK(file.size() == 12 + 1 + 2 + 33 + 64);
  CHECK(*DecodeIdentityCredentialFile(file) == id->credential);
  auto trailing = file;
  trailing.push_back(0);
  CHECK(Says(DecodeIdentityCredentialFile(trailing), "trailing bytes"));
  for (size_t cut = 0; cut < file.size(); ++cut) {
    CHECK(!DecodeIdentityCredentialFile(std::span(file).first(cut)).ok());
  }
  auto magic = file;
  magic[0] = 'X';
  CHECK(Says(DecodeIdentityCredentialFile(magic), "not a FRUGAL-IDC1 file"));
  auto bad_point = file;
  bad_point[12 + 1 + 2] = 0x04;
  CHECK(Says(DecodeIdentityCredentialFile(bad_point), "not a compressed P-256 point"));
  auto bad_name = file;
  bad_name[12 + 1] = ' ';
  CHECK(Says(DecodeIdentityCredentialFile(bad_name), "name outside"));
}

TEST_CASE("an identity-bound round gives the exact sum, and its keys travel with credentials") {
  BoundRound b = Advertised(10);
  auto server = SecureAggServer::Create(b.cfg, b.ca.ca_public());
  REQUIRE(server.ok());
  // Rerun from scratch through all stages (Advertised's server is gone).
  std::vector<SecureAggClient> clients;
  for (uint32_t u = 0; u < 10; ++u) {
    auto c = SecureAggClient::Create(b.cfg, u, b.ids[u]);
    REQUIRE(c.ok());
    auto msg = c->AdvertiseKeys();
    REQUIRE(msg.ok());
    auto decoded = DecodeSecureMessage(*msg);
    REQUIRE(decoded.ok());
    REQUIRE(decoded->keys.identity.has_value());
    CHECK(decoded->keys.identity->name == std::to_string(100 + u));
    REQUIRE(server->OnAdvertiseKeys(u, *msg, std::to_string(100 + u)).ok());
    clients.push_back(std::move(*c));
  }
  auto dirs = server->CloseAdvertiseKeys();
  REQUIRE(dirs.ok());
  for (auto& [u, d] : *dirs) {
    auto msg = clients[u].ShareKeys(d);
    REQUIRE_MESSAGE(msg.ok(), msg.status().ToString());
    REQUIRE(server->OnShareKeys(u, *msg).ok());
  }
  auto inboxes = server->CloseShareKeys();
  REQUIRE(inboxes.ok());
  Rng rng(3);
  std::vector<uint64_t> sum(b.cfg.length, 0);
  for (auto& [u, inbox] : *inboxes) {
    std::vector<uint64_t> in(b.cfg.length);
    for (size_t i = 0; i < in.size(); ++i) {
      in[i] = rng.NextU64() & RingMask(b.cfg.bits);
      sum[i] = (sum[i] + in[i]) & RingMask(b.cfg.bits);
    }
    auto msg = clients[u].MaskedInput(inbox, in);
    REQUIRE(msg.ok());
    REQUIRE(server->OnMaskedInput(u, *msg).ok());
  }
  auto lists = server->CloseMaskedInput();
  REQUIRE(lists.ok());
  for (auto& [u, l] : *lists) REQUIRE(server->OnSurvivorSignature(u, *clients[u].SignSurvivors(l)).ok());
  auto sigs = server->CloseSurvivorSignatures();
  REQUIRE(sigs.ok());
  for (auto& [u, g] : *sigs) REQUIRE(server->OnUnmaskResponse(u, *clients[u].Unmask(g)).ok());
  auto agg = server->Finish();
  REQUIRE(agg.ok());
  CHECK(agg->sum == sum);
}

TEST_CASE("a client refuses every advertisement the server could forge, naming what failed") {
  BoundRound b = Advertised(10);
  auto dir = DecodeSecureMessage(b.directories.at(0));
  REQUIRE(dir.ok());
  REQUIRE(dir->directory.size() >= 2);
  auto refused = [&](const SecureMessage& forged) {
    auto c = SecureAggClient::Create(b.cfg, 0, b.ids[0]);
    REQUIRE(c.ok());
    REQUIRE(c->AdvertiseKeys().ok());
    auto r = c->ShareKeys(EncodeSecureMessage(forged));
    REQUIRE(!r.ok());
    CHECK(r.error().code() == ErrorCode::kUnauthenticated);
    return r.error().message();
  };
  // The untouched directory is accepted.
  {
    auto c = SecureAggClient::Create(b.cfg, 0, b.ids[0]);
    REQUIRE(c->AdvertiseKeys().ok());
    CHECK(c->ShareKeys(b.directories.at(0)).ok());
  }
  AdvertisedKeys& victim = dir->directory[1];
  const uint32_t pos = victim.position;

  SUBCASE("a Sybil: keys and a credential from a CA of the server's own") {
    auto rogue = SimulatedIdentityAuthority::Create(99);
    REQUIRE(rogue.ok());
    auto sybil = rogue->Issue(100 + pos);  // even the victim's own name
    REQUIRE(sybil.ok());
    SecureMessage forged = *dir;
    AdvertisedKeys& k = forged.directory[1];
    k.identity = sybil->credential;
    k.identity_signature = *sybil->key->Sign(AdvertisementSigningBytes(b.cfg.session_id, b.cfg.round, k));
    CHECK(refused(forged).find("not signed by this client's CA") != std::string::npos);
  }
  SUBCASE("an altered key") {
    SecureMessage forged = *dir;
    forged.directory[1].mask_public[0] ^= 1;
    CHECK(refused(forged).find("did not sign these keys") != std::string::npos);
    forged = *dir;
    forged.directory[1].signing_public[3] ^= 1;
    CHECK(refused(forged).find("did not sign these keys") != std::string::npos);
  }
  SUBCASE("an advertisement replayed from another round or session") {
    for (auto [session, round] : {std::pair<uint64_t, uint32_t>{77, 2}, {78, 3}}) {
      SecureRoundConfig other = b.cfg;
      other.session_id = session;
      other.round = round;
      auto c = SecureAggClient::Create(other, pos, b.ids[pos]);
      REQUIRE(c.ok());
      auto old = DecodeSecureMessage(*c->AdvertiseKeys());
      REQUIRE(old.ok());
      SecureMessage forged = *dir;
      forged.directory[1] = old->keys;
      CHECK(refused(forged).find("did not sign these keys") != std::string::npos);
    }
  }
  SUBCASE("a real client's advertisement moved to another position") {
    SecureMessage forged = *dir;
    const uint32_t to = forged.directory[0].position;
    forged.directory[0] = victim;
    forged.directory[0].position = to;
    CHECK(refused(forged).find("did not sign these keys") != std::string::npos);
  }
  SUBCASE("one identity at two positions (its key signing both)") {
    SecureMessage forged = *dir;
    AdvertisedKeys& k = forged.directory[0];
    k.identity = victim.identity;
    k.identity_signature = *b.ids[pos].key->Sign(AdvertisementSigningBytes(b.cfg.session_id, b.cfg.round, k));
    CHECK(refused(forged).find("appears twice") != std::string::npos);
  }
  SUBCASE("keys without a credential") {
    SecureMessage forged = *dir;
    forged.directory[1].identity.reset();
    CHECK(refused(forged).find("carry no identity credential") != std::string::npos);
  }
}

TEST_CASE("the server refuses a client posing as another, or without a credential in a bound round") {
  BoundRound b = Advertised(5);
  auto server = SecureAggServer::Create(b.cfg, b.ca.ca_public());
  REQUIRE(server.ok());
  auto c = SecureAggClient::Create(b.cfg, 1, b.ids[1]);
  auto msg = c->AdvertiseKeys();
  REQUIRE(msg.ok());
  auto st = server->OnAdvertiseKeys(1, *msg, "102");
  CHECK(st.error().code() == ErrorCode::kPermissionDenied);
  CHECK(Says(st, "authenticated as '102', advertised the identity of '101'"));
  CHECK(server->OnAdvertiseKeys(1, *msg, "101").ok());
  // Without a credential, in a round that binds identities.
  SecureRoundConfig loose = b.cfg;
  loose.identity = false;
  auto plain = SecureAggClient::Create(loose, 2);
  REQUIRE(plain.ok());
  CHECK(Says(server->OnAdvertiseKeys(2, *plain->AdvertiseKeys()), "without an identity credential"));
  // A client without an identity cannot join such a round.
  auto none = SecureAggClient::Create(b.cfg, 3);
  REQUIRE(!none.ok());
  CHECK(none.error().code() == ErrorCode::kFailedPrecondition);
  // A key that is not the credential's is refused at once.
  SecureIdentity mixed = b.ids[3];
  mixed.key = b.ids[4].key;
  CHECK(Says(SecureAggClient::Create(b.cfg, 3, mixed), "not the credential's"));
  // A server with another CA refuses what this fleet's CA signed.
  auto rogue = SimulatedIdentityAuthority::Create(99);
  auto other = SecureAggServer::Create(b.cfg, rogue->ca_public());
  auto d = SecureAggClient::Create(b.cfg, 4, b.ids[4]);
  CHECK(Says(other->OnAdvertiseKeys(4, *d->AdvertiseKeys()), "not signed by this client's CA"));
}

TEST_CASE("a client that holds an identity checks its neighbours even when the round does not ask") {
  BoundRound b = Advertised(5);
  SecureRoundConfig loose = b.cfg;
  loose.identity = false;
  auto server = SecureAggServer::Create(loose);
  REQUIRE(server.ok());
  std::vector<SecureAggClient> clients;
  for (uint32_t u = 0; u < 5; ++u) {
    auto c = u == 0 ? SecureAggClient::Create(loose, u, b.ids[0]) : SecureAggClient::Create(loose, u);
    REQUIRE(c.ok());
    REQUIRE(server->OnAdvertiseKeys(u, *c->AdvertiseKeys()).ok());
    clients.push_back(std::move(*c));
  }
  auto dirs = server->CloseAdvertiseKeys();
  REQUIRE(dirs.ok());
  auto r = clients[0].ShareKeys(dirs->at(0));
  CHECK(Says(r, "carry no identity credential"));
  CHECK(clients[1].ShareKeys(dirs->at(1)).ok());
}

}  // TEST_SUITE

}  // namespace
}  // namespace frugal::privacy
