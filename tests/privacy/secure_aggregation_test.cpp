// The SecAgg+ state machines (frugal/privacy/secure_aggregation.h) driven end to
// end in one process: real keys, shares, AEAD and masks; only the transport is
// a loop here (the front ends move the same bytes over TLS or a virtual clock).
#include "frugal/privacy/secure_aggregation.h"

#include <doctest/doctest.h>

#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "frugal/core/random.h"

namespace frugal::privacy {
namespace {

// When a client stops answering: never (kNone) or before the named stage.
enum class DropBefore { kNone, kAdvertise, kShareKeys, kMaskedInput, kUnmask };

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

// Runs the four stages; a client in `drops` stops before its stage.
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
  FRUGAL_ASSIGN_OR_RETURN(auto requests, server.CloseMaskedInput());
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
      {20, DropBefore::kUnmask},     {24, DropBefore::kUnmask},     {28, DropBefore::kMaskedInput}};
  auto agg = Run(h, drops);
  REQUIRE_MESSAGE(agg.ok(), agg.status().ToString());
  std::vector<uint32_t> expected_survivors;
  for (uint32_t u = 0; u < 30; ++u) {
    auto it = drops.find(u);
    if (it == drops.end() || it->second == DropBefore::kUnmask) expected_survivors.push_back(u);
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

// Runs a round up to the unmask requests and returns them with the server.
struct UpToUnmask {
  Harness h;
  std::map<uint32_t, std::vector<uint8_t>> requests;
};
UpToUnmask RunToUnmask(uint32_t dropped_client) {
  UpToUnmask r{Make(10, 0.33, 32, 20, 8), {}};
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
  r.requests = *server->CloseMaskedInput();
  return r;
}

TEST_CASE("an honest client never reveals both shares of one neighbour") {
  UpToUnmask r = RunToUnmask(1);
  // Client 0's neighbours are 1 2 3 7 8 9; 1 dropped.
  auto req = DecodeSecureMessage(r.requests.at(0));
  REQUIRE(req.ok());
  CHECK(req->dropped == std::vector<uint32_t>{1});
  CHECK(req->survivors == std::vector<uint32_t>{2, 3, 7, 8, 9});
  SUBCASE("a request naming a neighbour both survivor and dropped is refused") {
    SecureMessage bad = *req;
    bad.dropped = {1, 2};
    auto resp = r.h.clients[0].Unmask(EncodeSecureMessage(bad));
    REQUIRE(!resp.ok());
    CHECK(resp.error().code() == ErrorCode::kPermissionDenied);
    CHECK(resp.error().message().find("both shares of 2") != std::string::npos);
    // the refusal changed nothing: the honest request is still answered
    CHECK(r.h.clients[0].Unmask(r.requests.at(0)).ok());
  }
  SUBCASE("a second request (to draw the other share) is refused") {
    auto first = r.h.clients[0].Unmask(r.requests.at(0));
    REQUIRE(first.ok());
    auto revealed = DecodeSecureMessage(*first);
    REQUIRE(revealed.ok());
    // one share per neighbour, of the kind its fate calls for
    for (const auto& s : revealed->revealed) {
      CHECK(s.kind == (s.owner == 1 ? RevealedKind::kMaskKey : RevealedKind::kSelfSeed));
    }
    CHECK(revealed->revealed.size() == 6);
    SecureMessage other = *req;
    other.survivors = {1, 3, 7, 8, 9};
    other.dropped = {2};
    auto second = r.h.clients[0].Unmask(EncodeSecureMessage(other));
    REQUIRE(!second.ok());
    CHECK(second.error().code() == ErrorCode::kPermissionDenied);
  }
  SUBCASE("a request naming a client it holds no shares from is refused") {
    SecureMessage bad = *req;
    bad.survivors = {2, 3, 4, 7, 8, 9};  // 4 is not a neighbour of 0
    CHECK(r.h.clients[0].Unmask(EncodeSecureMessage(bad)).error().code() == ErrorCode::kPermissionDenied);
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
  const auto requests = *server->CloseMaskedInput();
  for (auto& [u, req] : requests) REQUIRE(server->OnUnmaskResponse(u, *h.clients[u].Unmask(req)).ok());
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
  CHECK(vb.size() == 18 + 1 + 4 + 10);  // header, bits, count, 4 x 20 bits
  CHECK(DecodeSecureMessage(vb)->masked == v.masked);
  vb[1] = 9;
  CHECK(!DecodeSecureMessage(vb).ok());  // unknown type
}

}  // TEST_SUITE

}  // namespace
}  // namespace frugal::privacy
