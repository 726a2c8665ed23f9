// The SecAgg+ state machines (frugal/privacy/secure_aggregation.h) driven end to
// end in one process: real keys, shares, AEAD and masks; only the transport is
// a loop here (the front ends move the same bytes over TLS or a virtual clock).
#include "frugal/privacy/secure_aggregation.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/test_source_dir.h"

namespace frugal::privacy {
namespace {

// When a client stops answering: never (kNone) or before the named stage.
enum class DropBefore { kNone, kAdvertise, kShareKeys, kMaskedInput, kSign, kUnmask };

struct Harness {
  SecureRoundConfig cfg;
  std::vector<SecureAggClient> clients;
  std::vector<std::vector<uint64_t>> inputs;
};

Harness Make(uint32_t n, double dropout, int bits, uint32_t length, uint64_t seed) {
  auto cfg = PlanSecureRound(7, 3, n, 0.05, dropout, bits, length);
  REQUIRE(cfg.ok());
  Harness h{*cfg, {}, {}};
  Rng rng(seed);
  for (uint32_t u = 0; u < n; ++u) {
    auto c = SecureAggClient::Create(h.cfg, u);
    REQUIRE(c.ok());
    h.clients.push_back(std::move(*c));
    std::vector<uint64_t> in(length);
    for (auto& v : in) v = rng.NextU64() & RingMask(bits);
    h.inputs.push_back(std::move(in));
  }
  return h;
}

// Runs the five stages; a client in `drops` stops before its stage.
Result<SecureAggregate> Run(Harness& h, const std::map<uint32_t, DropBefore>& drops) {
  auto dropped_before = [&](uint32_t u, DropBefore stage) {
    auto it = drops.find(u);
    return it != drops.end() && static_cast<int>(it->second) <= static_cast<int>(stage);
  };
  FRUGAL_ASSIGN_OR_RETURN(auto server, SecureAggServer::Create(h.cfg));
  for (auto& c : h.clients) {
    if (dropped_before(c.position(), DropBefore::kAdvertise)) continue;
    FRUGAL_ASSIGN_OR_RETURN(auto msg, c.AdvertiseKeys());
    FRUGAL_RETURN_IF_ERROR(server.OnAdvertiseKeys(c.position(), msg));
  }
  FRUGAL_ASSIGN_OR_RETURN(auto directories, server.CloseAdvertiseKeys());
  for (auto& [u, dir] : directories) {
    if (dropped_before(u, DropBefore::kShareKeys)) continue;
    FRUGAL_ASSIGN_OR_RETURN(auto msg, h.clients[u].ShareKeys(dir));
    FRUGAL_RETURN_IF_ERROR(server.OnShareKeys(u, msg));
  }
  FRUGAL_ASSIGN_OR_RETURN(auto inboxes, server.CloseShareKeys());
  for (auto& [u, inbox] : inboxes) {
    if (dropped_before(u, DropBefore::kMaskedInput)) continue;
    FRUGAL_ASSIGN_OR_RETURN(auto msg, h.clients[u].MaskedInput(inbox, h.inputs[u]));
    FRUGAL_RETURN_IF_ERROR(server.OnMaskedInput(u, msg));
  }
  FRUGAL_ASSIGN_OR_RETURN(auto lists, server.CloseMaskedInput());
  for (auto& [u, list] : lists) {
    if (dropped_before(u, DropBefore::kSign)) continue;
    FRUGAL_ASSIGN_OR_RETURN(auto msg, h.clients[u].SignSurvivors(list));
    FRUGAL_RETURN_IF_ERROR(server.OnSurvivorSignature(u, msg));
  }
  FRUGAL_ASSIGN_OR_RETURN(auto requests, server.CloseSurvivorSignatures());
  for (auto& [u, req] : requests) {
    if (dropped_before(u, DropBefore::kUnmask)) continue;
    FRUGAL_ASSIGN_OR_RETURN(auto msg, h.clients[u].Unmask(req));
    FRUGAL_RETURN_IF_ERROR(server.OnUnmaskResponse(u, msg));
  }
  return server.Finish();
}

std::vector<uint64_t> PlainSum(const Harness& h, const std::vector<uint32_t>& who) {
  std::vector<uint64_t> sum(h.cfg.length, 0);
  for (uint32_t u : who) {
    for (size_t i = 0; i < sum.size(); ++i) sum[i] = (sum[i] + h.inputs[u][i]) & RingMask(h.cfg.bits);
  }
  return sum;
}

TEST_SUITE("secure_aggregation") {

TEST_CASE("planning: Harary parameters where they exist, the complete graph below, and n < 3 refused") {
  auto p10 = PlanSecureRound(1, 1, 10, 0.05, 0.33, 32, 100);
  REQUIRE(p10.ok());
  CHECK(p10->degree == 6);
  CHECK(p10->threshold == 2);
  auto p100 = PlanSecureRound(1, 1, 100, 0.05, 0.33, 32, 100);
  REQUIRE(p100.ok());
  CHECK(p100->degree == 28);  // Google's table (tests/privacy/secagg_test.cpp)
  CHECK(p100->threshold == 6);
  auto p5 = PlanSecureRound(1, 1, 5, 0.05, 0.33, 32, 100);
  REQUIRE(p5.ok());
  CHECK(p5->degree == 4);
  CHECK(p5->threshold == 2);
  CHECK(*SecureNeighbours(*p5, 2) == std::vector<uint32_t>{0, 1, 3, 4});
  CHECK(!PlanSecureRound(1, 1, 2, 0.05, 0.33, 32, 100).ok());
  CHECK(!PlanSecureRound(1, 1, 10, 0.05, 1.5, 32, 100).ok());
}

TEST_CASE("with every client answering, the masks cancel and the server gets exactly the sum") {
  for (uint32_t n : {3u, 5u, 10u, 40u}) {
    Harness h = Make(n, 0.33, 32, 257, n);
    auto agg = Run(h, {});
    REQUIRE_MESSAGE(agg.ok(), agg.status().ToString());
    std::vector<uint32_t> all(n);
    std::iota(all.begin(), all.end(), 0u);
    CHECK(agg->survivors == all);
    CHECK(agg->dropped.empty());
    CHECK(agg->sum == PlainSum(h, all));
    // and the sum is not what a server would see without unmasking: every
    // client's masked vector differs from its input.
    CHECK(h.clients[0].masked_with().size() == h.cfg.degree);
  }
}

TEST_CASE("dropouts at every stage up to the tolerated fraction leave the exact sum of the survivors") {
  // 30 clients at 5% corrupt / 33% dropout; 9 drop (30%), at each stage.
  Harness h = Make(30, 0.33, 24, 100, 11);
  std::map<uint32_t, DropBefore> drops = {
      {1, DropBefore::kAdvertise},   {5, DropBefore::kShareKeys},   {9, DropBefore::kMaskedInput},
      {10, DropBefore::kMaskedInput}, {11, DropBefore::kMaskedInput}, {17, DropBefore::kMaskedInput},
      {20, DropBefore::kUnmask},     {24, DropBefore::kSign},       {28, DropBefore::kMaskedInput}};
  auto agg = Run(h, drops);
  REQUIRE_MESSAGE(agg.ok(), agg.status().ToString());
  std::vector<uint32_t> expected_survivors;
  for (uint32_t u = 0; u < 30; ++u) {
    auto it = drops.find(u);
    if (it == drops.end() || it->second >= DropBefore::kSign) expected_survivors.push_back(u);
  }
  CHECK(agg->survivors == expected_survivors);  // a client that dropped in unmasking still sent its input
  CHECK(agg->dropped == std::vector<uint32_t>{9, 10, 11, 17, 28});
  CHECK(agg->sum == PlainSum(h, expected_survivors));
}

TEST_CASE("too many dropouts fail the round cleanly instead of releasing a wrong sum") {
  SUBCASE("a survivor's neighbours all vanish in unmasking") {
    Harness h = Make(10, 0.33, 32, 50, 3);  // k = 6, t = 2: neighbours of 0 are 1 2 3 7 8 9
    std::map<uint32_t, DropBefore> drops;
    for (uint32_t v : {1u, 2u, 3u, 7u, 8u}) drops[v] = DropBefore::kUnmask;  // 0 is left with 9 only
    auto agg = Run(h, drops);
    REQUIRE(!agg.ok());
    CHECK(agg.error().code() == ErrorCode::kFailedPrecondition);
    CHECK(agg.error().message().find("self mask of 0") != std::string::npos);
  }
  SUBCASE("fewer than t + 1 clients share keys") {
    Harness h = Make(5, 0.33, 32, 50, 4);
    auto agg = Run(h, {{0, DropBefore::kShareKeys}, {1, DropBefore::kShareKeys}, {2, DropBefore::kShareKeys}});
    REQUIRE(!agg.ok());
    CHECK(agg.error().code() == ErrorCode::kFailedPrecondition);
    CHECK(agg.error().message().find("sharing keys") != std::string::npos);
  }
}

// Runs a round (10 clients, k = 6, t = 2) to the survivor lists with one client
// dropped before its masked input, has every survivor sign the list, and
// keeps each client's signature so a test can play a lying server.
struct UpToUnmask {
  Harness h;
  std::map<uint32_t, std::vector<uint8_t>> lists;       // the honest server's kSurvivorList, by client
  std::map<uint32_t, Signature512> signatures;          // each survivor's signature on it
  std::map<uint32_t, std::vector<uint8_t>> requests;    // the honest server's kSurvivorSignatures
};
UpToUnmask RunToUnmask(uint32_t dropped_client, bool sign_all = true) {
  UpToUnmask r{Make(10, 0.33, 32, 20, 8), {}, {}, {}};
  auto server = SecureAggServer::Create(r.h.cfg);
  REQUIRE(server.ok());
  for (auto& c : r.h.clients) REQUIRE(server->OnAdvertiseKeys(c.position(), *c.AdvertiseKeys()).ok());
  const auto dirs = *server->CloseAdvertiseKeys();
  for (auto& [u, dir] : dirs) REQUIRE(server->OnShareKeys(u, *r.h.clients[u].ShareKeys(dir)).ok());
  const auto inboxes = *server->CloseShareKeys();
  for (auto& [u, inbox] : inboxes) {
    if (u == dropped_client) continue;
    REQUIRE(server->OnMaskedInput(u, *r.h.clients[u].MaskedInput(inbox, r.h.inputs[u])).ok());
  }
  r.lists = *server->CloseMaskedInput();
  if (!sign_all) return r;
  for (auto& [u, list] : r.lists) {
    if (u == 0) continue;  // client 0 signs in the test, the list the test shows it
    auto sig = r.h.clients[u].SignSurvivors(list);
    REQUIRE(sig.ok());
    r.signatures[u] = DecodeSecureMessage(*sig)->signature;
    REQUIRE(server->OnSurvivorSignature(u, *sig).ok());
  }
  return r;
}

// What a server relays to client 0: the given neighbours' signatures.
std::vector<uint8_t> SignaturesFor0(const UpToUnmask& r, const std::vector<uint32_t>& signers) {
  SecureMessage m;
  m.header = {SecureMessageType::kSurvivorSignatures, r.h.cfg.session_id, r.h.cfg.round, 0};
  for (uint32_t v : signers) m.signatures.push_back({v, r.signatures.at(v)});
  return EncodeSecureMessage(m);
}

TEST_CASE("an honest client never reveals both shares of one neighbour") {
  UpToUnmask r = RunToUnmask(1);
  // Client 0's neighbours are 1 2 3 7 8 9; 1 dropped.
  auto list = DecodeSecureMessage(r.lists.at(0));
  REQUIRE(list.ok());
  CHECK(list->clients == 10);
  CHECK(list->survivors == std::vector<uint32_t>{0, 2, 3, 4, 5, 6, 7, 8, 9});
  REQUIRE(r.h.clients[0].SignSurvivors(r.lists.at(0)).ok());
  const std::vector<uint32_t> signers = {2, 3, 7, 8, 9};
  SUBCASE("one share per neighbour, of the kind its fate calls for, and never a second answer") {
    auto first = r.h.clients[0].Unmask(SignaturesFor0(r, signers));
    REQUIRE_MESSAGE(first.ok(), first.status().ToString());
    auto revealed = DecodeSecureMessage(*first);
    REQUIRE(revealed.ok());
    for (const auto& s : revealed->revealed) {
      CHECK(s.kind == (s.owner == 1 ? RevealedKind::kMaskKey : RevealedKind::kSelfSeed));
    }
    CHECK(revealed->revealed.size() == 6);
    auto second = r.h.clients[0].Unmask(SignaturesFor0(r, signers));
    REQUIRE(!second.ok());
    CHECK(second.error().code() == ErrorCode::kPermissionDenied);
  }
  SUBCASE("a second survivor list (to draw the other share) is not signed") {
    SecureMessage other = *list;
    other.survivors = {0, 1, 3, 4, 5, 6, 7, 8, 9};  // 1 back, 2 dropped
    auto second = r.h.clients[0].SignSurvivors(EncodeSecureMessage(other));
    REQUIRE(!second.ok());
    CHECK(second.error().code() == ErrorCode::kPermissionDenied);
  }
}

TEST_CASE("signed survivor lists: a server cannot show two lists, forge a signature, or unmask on fewer than t") {
  SUBCASE("an inconsistent list is refused: client 0 was shown 2 as dropped, its neighbours signed 2 a survivor") {
    UpToUnmask r = RunToUnmask(1);
    SecureMessage lie = *DecodeSecureMessage(r.lists.at(0));
    lie.survivors = {0, 3, 4, 5, 6, 7, 8, 9};
    // Signed, as the list alone looks plausible (2 may have vanished) ...
    REQUIRE(r.h.clients[0].SignSurvivors(EncodeSecureMessage(lie)).ok());
    // ... but the neighbours' signatures are on the true list, so no share of 2's mask key leaves client 0.
    auto resp = r.h.clients[0].Unmask(SignaturesFor0(r, {3, 7, 8, 9}));
    REQUIRE(!resp.ok());
    CHECK(resp.error().code() == ErrorCode::kPermissionDenied);
    CHECK(resp.error().message().find("does not verify on the survivor list") != std::string::npos);
    // Nor does the honest list's signature from a neighbour the lie calls dropped count.
    auto with2 = r.h.clients[0].Unmask(SignaturesFor0(r, {2, 3, 7, 8, 9}));
    REQUIRE(!with2.ok());
    CHECK(with2.error().code() == ErrorCode::kPermissionDenied);
  }
  SUBCASE("a forged signature is refused") {
    UpToUnmask r = RunToUnmask(1);
    REQUIRE(r.h.clients[0].SignSurvivors(r.lists.at(0)).ok());
    r.signatures.at(3)[10] ^= 1;
    auto resp = r.h.clients[0].Unmask(SignaturesFor0(r, {2, 3, 7, 8, 9}));
    REQUIRE(!resp.ok());
    CHECK(resp.error().message().find("signature of 3 does not verify") != std::string::npos);
    // and one neighbour's signature presented as another's
    r.signatures.at(3) = r.signatures.at(2);
    CHECK(!r.h.clients[0].Unmask(SignaturesFor0(r, {2, 3, 7, 8, 9})).ok());
  }
  SUBCASE("fewer than t signatures are refused; t are enough") {
    UpToUnmask r = RunToUnmask(1);
    REQUIRE(r.h.cfg.threshold == 2);
    REQUIRE(r.h.clients[0].SignSurvivors(r.lists.at(0)).ok());
    auto one = r.h.clients[0].Unmask(SignaturesFor0(r, {7}));
    REQUIRE(!one.ok());
    CHECK(one.error().message().find("1 neighbours signed the survivor list, threshold is 2") != std::string::npos);
    // A signature from a non-neighbour does not count, it is refused.
    CHECK(!r.h.clients[0].Unmask(SignaturesFor0(r, {4, 7})).ok());
    CHECK(r.h.clients[0].Unmask(SignaturesFor0(r, {7, 8})).ok());
  }
  SUBCASE("a list of another size, or one that leaves the client out, is not signed") {
    UpToUnmask r = RunToUnmask(1, false);
    SecureMessage m = *DecodeSecureMessage(r.lists.at(0));
    SecureMessage bigger = m;
    bigger.clients = 11;
    CHECK(r.h.clients[0].SignSurvivors(EncodeSecureMessage(bigger)).error().code() == ErrorCode::kPermissionDenied);
    SecureMessage without = m;
    without.survivors.erase(without.survivors.begin());  // drops 0 itself
    auto st = r.h.clients[0].SignSurvivors(EncodeSecureMessage(without));
    REQUIRE(!st.ok());
    CHECK(st.error().message().find("leaves this client out") != std::string::npos);
    CHECK(r.h.clients[0].SignSurvivors(r.lists.at(0)).ok());  // the refusals changed nothing
  }
  SUBCASE("the server refuses a signature that is not on the list it announced") {
    UpToUnmask r = RunToUnmask(1, false);
    auto server = SecureAggServer::Create(r.h.cfg);  // a fresh server has no list: stage refused
    REQUIRE(server.ok());
    CHECK(!server->OnSurvivorSignature(0, *r.h.clients[0].SignSurvivors(r.lists.at(0))).ok());
  }
}

TEST_CASE("messages of another round or session are refused, and the state stays as it was") {
  Harness h = Make(5, 0.33, 32, 10, 9);
  SecureRoundConfig other_round = h.cfg;
  other_round.round += 1;
  SecureRoundConfig other_session = h.cfg;
  other_session.session_id += 1;
  auto server = SecureAggServer::Create(h.cfg);
  REQUIRE(server.ok());
  for (const auto& other : {other_round, other_session}) {
    auto stranger = SecureAggClient::Create(other, 0);
    auto msg = stranger->AdvertiseKeys();
    auto st = server->OnAdvertiseKeys(0, *msg);
    REQUIRE(!st.ok());
    CHECK(st.error().message().find("session") != std::string::npos);
  }
  // A message claiming another sender than the connection it came on.
  auto c1 = h.clients[1].AdvertiseKeys();
  CHECK(!server->OnAdvertiseKeys(2, *c1).ok());
  CHECK(server->OnAdvertiseKeys(1, *c1).ok());
  CHECK(!server->OnAdvertiseKeys(1, *c1).ok());  // duplicate
  for (uint32_t u : {0u, 2u, 3u, 4u}) REQUIRE(server->OnAdvertiseKeys(u, *h.clients[u].AdvertiseKeys()).ok());
  auto dirs = server->CloseAdvertiseKeys();
  REQUIRE(dirs.ok());
  // A client refuses a directory of another round; then takes the right one.
  SecureMessage dir = *DecodeSecureMessage(dirs->at(0));
  dir.header.round += 1;
  CHECK(!h.clients[0].ShareKeys(EncodeSecureMessage(dir)).ok());
  dir.header.round -= 1;
  dir.header.party = 1;  // addressed to someone else
  CHECK(!h.clients[0].ShareKeys(EncodeSecureMessage(dir)).ok());
  for (auto& [u, d] : *dirs) REQUIRE(server->OnShareKeys(u, *h.clients[u].ShareKeys(d)).ok());
  auto inboxes = server->CloseShareKeys();
  REQUIRE(inboxes.ok());
  // A sealed share moved into another client's inbox fails to open (AEAD bound to the pair).
  SecureMessage swapped = *DecodeSecureMessage(inboxes->at(0));
  SecureMessage theirs = *DecodeSecureMessage(inboxes->at(2));
  swapped.shares[0].sealed = theirs.shares[0].sealed;
  auto masked = h.clients[0].MaskedInput(EncodeSecureMessage(swapped), h.inputs[0]);
  REQUIRE(!masked.ok());
  CHECK(masked.error().code() == ErrorCode::kUnauthenticated);
  for (auto& [u, inbox] : *inboxes) REQUIRE(server->OnMaskedInput(u, *h.clients[u].MaskedInput(inbox, h.inputs[u])).ok());
  const auto lists = *server->CloseMaskedInput();
  // A survivor list of another round is not signed.
  {
    SecureMessage l = *DecodeSecureMessage(lists.at(0));
    CHECK(!h.clients[0].SignSurvivors([&] { auto o = l; o.header.round += 1; return EncodeSecureMessage(o); }()).ok());
  }
  for (auto& [u, list] : lists) REQUIRE(server->OnSurvivorSignature(u, *h.clients[u].SignSurvivors(list)).ok());
  const auto requests = *server->CloseSurvivorSignatures();
  for (auto& [u, req] : requests) {
    // t signatures relayed of the degree's, all a client needs.
    CHECK(DecodeSecureMessage(req)->signatures.size() == h.cfg.threshold);
    REQUIRE(h.cfg.threshold < h.cfg.degree);
    REQUIRE(server->OnUnmaskResponse(u, *h.clients[u].Unmask(req)).ok());
  }
  auto agg = server->Finish();
  REQUIRE(agg.ok());
  CHECK(agg->sum == PlainSum(h, {0, 1, 2, 3, 4}));
}

TEST_CASE("a masked input is uniform in the ring whatever the input") {
  // All-zero input: what the server sees of one client is its masks alone.
  Harness h = Make(5, 0.33, 16, 64 * 1024, 10);
  for (auto& in : h.inputs) std::fill(in.begin(), in.end(), 0);
  auto server = SecureAggServer::Create(h.cfg);
  for (auto& c : h.clients) REQUIRE(server->OnAdvertiseKeys(c.position(), *c.AdvertiseKeys()).ok());
  const auto dirs = *server->CloseAdvertiseKeys();
  for (auto& [u, dir] : dirs) REQUIRE(server->OnShareKeys(u, *h.clients[u].ShareKeys(dir)).ok());
  auto inboxes = *server->CloseShareKeys();
  auto msg = h.clients[0].MaskedInput(inboxes.at(0), h.inputs[0]);
  REQUIRE(msg.ok());
  auto m = DecodeSecureMessage(*msg);
  REQUIRE(m.ok());
  std::vector<double> bins(256, 0);
  for (uint64_t v : m->masked) bins[v >> 8] += 1;
  const double expected = static_cast<double>(m->masked.size()) / 256;
  double chi2 = 0;
  for (double b : bins) chi2 += (b - expected) * (b - expected) / expected;
  CHECK(chi2 < 360);  // 255 degrees of freedom, p ~ 1e-5
}

TEST_CASE("the message encodings round-trip and refuse what is not canonical") {
  SecureMessage m;
  m.header = {SecureMessageType::kUnmaskResponse, 5, 6, 7};
  m.revealed = {{1, RevealedKind::kSelfSeed, {8, {1, 2, 3, 4, 5}}}, {3, RevealedKind::kMaskKey, {8, {9, 9, 9, 9, 9}}}};
  auto bytes = EncodeSecureMessage(m);
  auto back = DecodeSecureMessage(bytes);
  REQUIRE(back.ok());
  CHECK(back->revealed == m.revealed);
  bytes.push_back(0);
  CHECK(!DecodeSecureMessage(bytes).ok());  // trailing byte
  bytes.pop_back();
  bytes.pop_back();
  CHECK(!DecodeSecureMessage(bytes).ok());  // truncated
  std::swap(m.revealed[0], m.revealed[1]);
  CHECK(!DecodeSecureMessage(EncodeSecureMessage(m)).ok());  // not ascending
  SecureMessage v;
  v.header = {SecureMessageType::kMaskedInput, 1, 2, 3};
  v.bits = 20;
  v.masked = {1, 2, 0xFFFFF, 7};
  auto vb = EncodeSecureMessage(v);
  CHECK(vb.size() == 12 + 1 + 1 + 10);  // header (round and party varints), bits, count, 4 x 20 bits
  CHECK(DecodeSecureMessage(vb)->masked == v.masked);
  vb[1] = 11;
  CHECK(!DecodeSecureMessage(vb).ok());  // unknown type
  // The survivor list: a bitmap of n bits, padding zero.
  SecureMessage l;
  l.header = {SecureMessageType::kSurvivorList, 1, 2, 3};
  l.clients = 10;
  l.survivors = {0, 3, 9};
  auto lb = EncodeSecureMessage(l);
  CHECK(lb.size() == 12 + 1 + 2);
  auto lback = DecodeSecureMessage(lb);
  REQUIRE(lback.ok());
  CHECK(lback->survivors == l.survivors);
  lb.back() |= 0x80;  // bit 15 >= n
  CHECK(!DecodeSecureMessage(lb).ok());
  SecureMessage g;
  g.header = {SecureMessageType::kSurvivorSignatures, 1, 2, 3};
  g.signatures = {{4, {}}, {2, {}}};
  CHECK(!DecodeSecureMessage(EncodeSecureMessage(g)).ok());  // signers not ascending
  std::swap(g.signatures[0], g.signatures[1]);
  g.signatures[1].signature[63] = 7;
  CHECK(DecodeSecureMessage(EncodeSecureMessage(g))->signatures == g.signatures);
}

TEST_CASE("the fuzz target's seeds are canonical messages of every type, and the retired one is refused") {
  const std::filesystem::path dir = std::filesystem::path(FRUGAL_SOURCE_DIR) / "tests/fuzz/corpus/fuzz_secagg_messages";
  std::set<int> types;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<uint8_t> seed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(seed.size() > 2);
    const std::span<const uint8_t> bytes = std::span<const uint8_t>(seed).subspan(1);  // after the mode byte
    INFO(entry.path().filename().string());
    if (seed[0] % 6 == 5) {  // an identity credential file
      auto c = DecodeIdentityCredentialFile(bytes);
      REQUIRE_MESSAGE(c.ok(), c.status().ToString());
      CHECK(EncodeIdentityCredentialFile(*c) == std::vector<uint8_t>(bytes.begin(), bytes.end()));
      continue;
    }
    auto m = DecodeSecureMessage(bytes);
    if (entry.path().filename() == "retired_unmask_request") {
      CHECK(!m.ok());
      continue;
    }
    REQUIRE_MESSAGE(m.ok(), m.status().ToString());
    CHECK(EncodeSecureMessage(*m) == std::vector<uint8_t>(bytes.begin(), bytes.end()));
    types.insert(static_cast<int>(m->header.type));
  }
  CHECK(types == std::set<int>{1, 2, 3, 4, 5, 7, 8, 9, 10});
}

TEST_CASE("version 1 (fixed-width fields) and the retired type 6 are refused with a clear error") {
  SecureMessage a;
  a.header = {SecureMessageType::kAdvertiseKeys, 1, 2, 3};
  auto bytes = EncodeSecureMessage(a);
  bytes[0] = 1;
  auto v1 = DecodeSecureMessage(bytes);
  REQUIRE(!v1.ok());
  CHECK(v1.error().message().find("version 1, the fixed-width format") != std::string::npos);
  // The four-stage protocol's unsigned unmask request, type 6.
  std::vector<uint8_t> req = {2, 6, 1, 0, 0, 0, 0, 0, 0, 0, 2, 3, 0};
  auto r6 = DecodeSecureMessage(req);
  REQUIRE(!r6.ok());
  CHECK(r6.error().message().find("unsigned unmask request") != std::string::npos);
}

TEST_CASE("varint counts and positions: the sizes they save, and truncated or overlong ones refused") {
  // A key directory of 72 neighbours at positions around 900 (1,000 clients a
  // round): each entry's position is a one-byte gap, the count one byte.
  SecureMessage d;
  d.header = {SecureMessageType::kKeyDirectory, 0x1234, 2, 950};
  for (uint32_t p = 914; p < 986; ++p) {
    if (p != 950) d.directory.push_back({p, {}, {}, {}, std::nullopt, {}});
  }
  auto db = EncodeSecureMessage(d);
  const size_t entries = d.directory.size();
  // header 1 + 1 + 8 + 1 (round 2) + 2 (party 950); count 1; first position 2 bytes, the rest 1
  CHECK(db.size() == 13 + 1 + 2 + (entries - 1) + entries * (96 + 1));
  // The fixed-width format spent 18 + 4 + 4 per entry on the same fields.
  CHECK(18 + 4 + entries * 4 - (13 + 1 + 2 + (entries - 1)) == 220);
  auto back = DecodeSecureMessage(db);
  REQUIRE(back.ok());
  CHECK(back->directory == d.directory);
  // A share inbox: peer gaps and one-byte lengths.
  SecureMessage in;
  in.header = {SecureMessageType::kShareInbox, 9, 300, 70000};
  in.shares = {{0, std::vector<uint8_t>(100, 1)}, {5, std::vector<uint8_t>(100, 2)}, {70001, {3}}};
  auto ib = EncodeSecureMessage(in);
  CHECK(DecodeSecureMessage(ib)->shares == in.shares);
  // Overlong round varint (2 as 0x82 0x00) and a truncated one.
  std::vector<uint8_t> overlong(db.begin(), db.begin() + 10);
  overlong.insert(overlong.end(), {0x82, 0x00});
  overlong.insert(overlong.end(), db.begin() + 11, db.end());
  auto ol = DecodeSecureMessage(overlong);
  REQUIRE(!ol.ok());
  CHECK(ol.error().message().find("header: overlong varint") != std::string::npos);
  std::vector<uint8_t> cut(db.begin(), db.begin() + 12);  // inside the party varint
  auto tr = DecodeSecureMessage(cut);
  REQUIRE(!tr.ok());
  CHECK(tr.error().message().find("header: truncated varint") != std::string::npos);
  // A position gap that runs past 2^32 - 1.
  SecureMessage g;
  g.header = {SecureMessageType::kSurvivorSignatures, 1, 2, 3};
  g.signatures = {{UINT32_MAX, {}}};
  auto gb = EncodeSecureMessage(g);
  REQUIRE(DecodeSecureMessage(gb).ok());
  std::vector<uint8_t> two(gb.begin(), gb.begin() + 12);
  two.push_back(2);  // count 2
  two.insert(two.end(), gb.begin() + 13, gb.end());  // UINT32_MAX and its signature
  two.push_back(0);  // gap 0: UINT32_MAX + 1
  two.insert(two.end(), 64, 0);
  auto past = DecodeSecureMessage(two);
  REQUIRE(!past.ok());
  CHECK(past.error().message().find("past 2^32 - 1") != std::string::npos);
  // Every prefix of every encoding is refused (truncation anywhere).
  for (const auto& bytes : {db, ib, gb}) {
    for (size_t n = 0; n < bytes.size(); ++n) CHECK(!DecodeSecureMessage(std::span(bytes).first(n)).ok());
  }
}

}  // TEST_SUITE

}  // namespace
}  // namespace frugal::privacy
