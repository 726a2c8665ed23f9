#include "frugal/privacy/secagg.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "frugal/core/random.h"

namespace frugal::privacy {
namespace {

Key256 FromHex(const std::string& hex) {
  Key256 k{};
  for (size_t i = 0; i < k.size(); ++i)
    k[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return k;
}

Key256 FixedKey(uint8_t first) {
  Key256 k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(first + 7 * i);
  return k;
}

std::vector<uint32_t> Points(uint32_t n) {
  std::vector<uint32_t> xs(n);
  std::iota(xs.begin(), xs.end(), 1u);
  return xs;
}

// Chi-square statistic of counts against a uniform expectation.
double ChiSquare(const std::vector<double>& counts) {
  const double expected = std::accumulate(counts.begin(), counts.end(), 0.0) / counts.size();
  double chi2 = 0;
  for (double c : counts) chi2 += (c - expected) * (c - expected) / expected;
  return chi2;
}

// Upper 1e-6 tail of chi-square with `dof` degrees of freedom (Wilson-Hilferty).
double ChiSquareCritical(double dof) {
  constexpr double kZ = 4.753;  // standard normal upper 1e-6 quantile
  const double h = 2.0 / (9.0 * dof);
  return dof * std::pow(1 - h + kZ * std::sqrt(h), 3);
}

TEST_SUITE("privacy") {
  TEST_CASE("any t of n Shamir shares reconstruct the secret, and extra shares are checked") {
    Key256 secret = *RandomKey();
    const uint32_t n = 9, t = 4;
    auto shares = ShamirSplit(secret, t, Points(n));
    REQUIRE(shares.ok());
    REQUIRE(shares->size() == n);
    CHECK((*shares)[0].y.size() == 5);  // 32 bytes in 7-byte sub-secrets
    int subsets = 0;
    for (uint32_t mask = 0; mask < (1u << n); ++mask) {
      if (__builtin_popcount(mask) != static_cast<int>(t)) continue;
      std::vector<ShamirShare> chosen;
      for (uint32_t i = 0; i < n; ++i) {
        if (mask & (1u << i)) chosen.push_back((*shares)[i]);
      }
      auto back = ShamirReconstruct(chosen, t, secret.size());
      REQUIRE(back.ok());
      CHECK(std::equal(back->begin(), back->end(), secret.begin()));
      ++subsets;
    }
    CHECK(subsets == 126);
    auto all = ShamirReconstruct(*shares, t, secret.size());
    REQUIRE(all.ok());
    CHECK(std::equal(all->begin(), all->end(), secret.begin()));
    // A forged extra share is caught; t - 1 shares are refused.
    std::vector<ShamirShare> forged = *shares;
    forged[n - 1].y[2] = (forged[n - 1].y[2] + 1) % kShamirPrime;
    auto bad = ShamirReconstruct(forged, t, secret.size());
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code() == ErrorCode::kDataLoss);
    CHECK_FALSE(ShamirReconstruct(std::span(*shares).first(t - 1), t, secret.size()).ok());
    std::vector<ShamirShare> repeated = {(*shares)[0], (*shares)[0], (*shares)[1], (*shares)[2]};
    CHECK_FALSE(ShamirReconstruct(repeated, t, secret.size()).ok());
  }

  TEST_CASE("odd-sized secrets round-trip, and bad split arguments are refused") {
    const std::vector<uint8_t> secret = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255};
    auto shares = ShamirSplit(secret, 3, Points(5));
    REQUIRE(shares.ok());
    auto back = ShamirReconstruct(std::span(*shares).last(3), 3, secret.size());
    REQUIRE(back.ok());
    CHECK(*back == secret);
    CHECK_FALSE(ShamirSplit(secret, 1, Points(5)).ok());
    CHECK_FALSE(ShamirSplit(secret, 6, Points(5)).ok());
    const std::vector<uint32_t> with_zero = {0, 1, 2};
    const std::vector<uint32_t> repeated = {1, 2, 2};
    CHECK_FALSE(ShamirSplit(secret, 2, with_zero).ok());
    CHECK_FALSE(ShamirSplit(secret, 2, repeated).ok());
    CHECK_FALSE(ShamirSplit(std::vector<uint8_t>{}, 2, Points(3)).ok());
  }

  TEST_CASE(
      "t - 1 shares reveal nothing: over GF(13) every secret gives every pair of shares exactly "
      "once") {
    // The same evaluation code as the real field, checked exhaustively: for a
    // 3-of-n polynomial, the shares at x = 1 and x = 4 are uniform and
    // independent of the secret, so any candidate secret fits them equally.
    constexpr uint64_t p = 13;
    for (uint64_t secret = 0; secret < p; ++secret) {
      std::map<std::pair<uint64_t, uint64_t>, int> seen;
      for (uint64_t a1 = 0; a1 < p; ++a1) {
        for (uint64_t a2 = 0; a2 < p; ++a2) {
          const std::vector<uint64_t> poly = {secret, a1, a2};
          ++seen[{EvaluatePolynomial(poly, 1, p), EvaluatePolynomial(poly, 4, p)}];
        }
      }
      CHECK(seen.size() == p * p);
      CHECK(std::all_of(seen.begin(), seen.end(), [](const auto& kv) { return kv.second == 1; }));
    }
  }

  TEST_CASE("t - 1 real shares are consistent with any candidate secret") {
    const uint32_t t = 5;
    Key256 secret = *RandomKey();
    auto shares = ShamirSplit(secret, t, Points(8));
    REQUIRE(shares.ok());
    Rng rng(3);
    for (int trial = 0; trial < 20; ++trial) {
      // A candidate secret and the t − 1 shares define a degree t − 1 polynomial;
      // its value at a t-th point is a share that, with the others, reconstructs
      // the candidate. So t − 1 shares cannot rule any secret out.
      Key256 candidate;
      for (auto& b : candidate) b = static_cast<uint8_t>(rng.NextU64());
      std::vector<ShamirShare> known(shares->begin(), shares->begin() + (t - 1));
      ShamirShare made{8, {}};
      for (size_t c = 0; c < 5; ++c) {
        std::vector<uint64_t> xs = {0}, ys;
        uint64_t chunk = 0;
        for (size_t b = 0; b < kShamirChunkBytes && c * kShamirChunkBytes + b < 32; ++b) {
          chunk |= uint64_t{candidate[c * kShamirChunkBytes + b]} << (8 * b);
        }
        ys.push_back(chunk);
        for (const auto& s : known) {
          xs.push_back(s.x);
          ys.push_back(s.y[c]);
        }
        made.y.push_back(*Interpolate(xs, ys, made.x, kShamirPrime));
      }
      known.push_back(made);
      auto back = ShamirReconstruct(known, t, 32);
      REQUIRE(back.ok());
      CHECK(std::equal(back->begin(), back->end(), candidate.begin()));
    }
  }

  TEST_CASE(
      "SecAgg+ degree and threshold match Google's parameter-finder table (security 40, "
      "correctness 20)") {
    struct Row {
      uint32_t n;
      double corrupt, dropout;
      SecAggAdversary adversary;
      uint32_t degree, threshold;
    };
    const auto kHonest = SecAggAdversary::kSemiHonest;
    const auto kMalicious = SecAggAdversary::kSemiMalicious;
    const std::vector<Row> rows = {
        // 5% corrupt, 33% dropout, semi-honest (the setting). At n = 10 the
        // finder's table says 4/2, but with k = 4 one neighbour or fewer survives
        // with probability 7/210 (hypergeometric), far above 2^-20: its t = 2 lies
        // above its own survivor quantile (t2 = 1). Here t <= t2 is enforced: 6/2.
        {10, 0.05, 0.33, kHonest, 6, 2},
        {100, 0.05, 0.33, kHonest, 28, 6},
        {1000, 0.05, 0.33, kHonest, 72, 24},
        {10000, 0.05, 0.33, kHonest, 86, 29},
        {100000, 0.05, 0.33, kHonest, 96, 32},
        {1000000, 0.05, 0.33, kHonest, 102, 34},
        // 33% corrupt, 33% dropout, semi-honest
        {10, 0.33, 0.33, kHonest, 8, 4},
        {100, 0.33, 0.33, kHonest, 68, 34},
        {1000, 0.33, 0.33, kHonest, 286, 150},
        {10000, 0.33, 0.33, kHonest, 422, 221},
        // 45% / 45%, semi-honest
        {100, 0.45, 0.45, kHonest, 92, 46},
        {1000, 0.45, 0.45, kHonest, 822, 417},
        // 5% / 33%, semi-malicious
        {10, 0.05, 0.33, kMalicious, 8, 5},
        {100, 0.05, 0.33, kMalicious, 72, 39},
        {1000, 0.05, 0.33, kMalicious, 398, 223},
        {10000, 0.05, 0.33, kMalicious, 746, 420},
        // 30% / 30%, semi-malicious
        {100, 0.3, 0.3, kMalicious, 92, 62},
        {1000, 0.3, 0.3, kMalicious, 872, 584},
        // 33% corrupt, 5% dropout
        {100, 0.33, 0.05, kHonest, 34, 29},
        {1000, 0.33, 0.05, kHonest, 78, 60},
        {1000, 0.33, 0.05, kMalicious, 132, 109},
    };
    for (const Row& r : rows) {
      auto got = ComputeSecAggGraphParameters(r.n, r.corrupt, r.dropout, r.adversary);
      CAPTURE(r.n);
      CAPTURE(r.corrupt);
      CAPTURE(r.dropout);
      CAPTURE(static_cast<int>(r.adversary));
      REQUIRE(got.ok());
      CHECK(got->degree == r.degree);
      // The finder's own test bounds the threshold from above (any t in the secure
      // range is fine); the table's value is the smallest such t.
      CHECK(got->threshold <= r.threshold);
      CHECK(got->threshold == r.threshold);
      CHECK(got->threshold >= 2);
    }
    CHECK_FALSE(ComputeSecAggGraphParameters(100, 0.5, 0.5).ok());
    CHECK_FALSE(ComputeSecAggGraphParameters(100, 0.3, 0.31, SecAggAdversary::kSemiMalicious).ok());
    CHECK_FALSE(ComputeSecAggGraphParameters(0, 0.05, 0.33).ok());
    CHECK_FALSE(ComputeSecAggGraphParameters(100, -0.1, 0.33).ok());
  }

  TEST_CASE(
      "Harary neighbours are the ring positions within degree/2, and the graph is k-regular and "
      "symmetric") {
    auto nb = HararyNeighbours(10, 4, 0);
    REQUIRE(nb.ok());
    CHECK(*nb == std::vector<uint32_t>{1, 2, 8, 9});
    for (uint32_t u = 0; u < 10; ++u) {
      auto list = *HararyNeighbours(10, 4, u);
      CHECK(list.size() == 4);
      for (uint32_t v : list) {
        auto back = *HararyNeighbours(10, 4, v);
        CHECK(std::find(back.begin(), back.end(), u) != back.end());
      }
    }
    CHECK_FALSE(HararyNeighbours(10, 3, 0).ok());
    CHECK_FALSE(HararyNeighbours(10, 10, 0).ok());
    CHECK_FALSE(HararyNeighbours(10, 4, 10).ok());
  }

  TEST_CASE("Ed25519 matches RFC 8032's first vector, and a changed message, key or signature does not verify") {
    const Key256 secret = FromHex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    const Key256 pub = FromHex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    auto sig = Ed25519Sign(secret, {});
    REQUIRE(sig.ok());
    Signature512 expected{};
    const Key256 a = FromHex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155");
    const Key256 b = FromHex("5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    std::copy(a.begin(), a.end(), expected.begin());
    std::copy(b.begin(), b.end(), expected.begin() + 32);
    CHECK(*sig == expected);
    CHECK(Ed25519Verify(pub, {}, *sig).ok());
    const std::vector<uint8_t> other = {0x72};
    CHECK(Ed25519Verify(pub, other, *sig).error().code() == ErrorCode::kUnauthenticated);
    Signature512 bad = *sig;
    bad[5] ^= 1;
    CHECK(!Ed25519Verify(pub, {}, bad).ok());
    auto fresh = GenerateEd25519KeyPair();
    REQUIRE(fresh.ok());
    CHECK(!Ed25519Verify(fresh->public_key, {}, *sig).ok());
    CHECK(Ed25519Verify(fresh->public_key, other, *Ed25519Sign(fresh->private_key, other)).ok());
  }

  TEST_CASE("X25519 matches RFC 7748 and HKDF-SHA256 matches RFC 5869") {
    const Key256 alice =
        FromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const Key256 bob = FromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    const Key256 alice_pub =
        FromHex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    const Key256 bob_pub =
        FromHex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    const Key256 shared =
        FromHex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    CHECK(*X25519PublicKey(alice) == alice_pub);
    CHECK(*X25519PublicKey(bob) == bob_pub);
    const std::vector<uint8_t> info = PairKeyInfo("mask", 7, 3, 2, 5);
    auto ab = AgreeKey(alice, bob_pub, info);
    auto ba = AgreeKey(bob, alice_pub, PairKeyInfo("mask", 7, 3, 5, 2));  // the pair is unordered
    REQUIRE(ab.ok());
    REQUIRE(ba.ok());
    CHECK(*ab == *ba);
    CHECK(*ab == *HkdfSha256(shared, {}, info));
    // The key imported once for many agreements gives the same keys.
    auto alice_once = X25519Agreement::Load(alice);
    REQUIRE(alice_once.ok());
    CHECK(*alice_once->PublicKey() == alice_pub);
    CHECK(*alice_once->Agree(bob_pub, info) == *ab);
    CHECK(*alice_once->Agree(bob_pub, PairKeyInfo("mask", 7, 4, 2, 5)) != *ab);
    CHECK(*AgreeKey(alice, bob_pub, PairKeyInfo("mask", 7, 4, 2, 5)) != *ab);     // another round
    CHECK(*AgreeKey(alice, bob_pub, PairKeyInfo("channel", 7, 3, 2, 5)) != *ab);  // another use
    // RFC 5869 A.1 (the first 32 bytes of its 42-byte output).
    const std::vector<uint8_t> ikm(22, 0x0b);
    std::vector<uint8_t> salt(13), info1(10);
    std::iota(salt.begin(), salt.end(), uint8_t{0});
    std::iota(info1.begin(), info1.end(), uint8_t{0xf0});
    CHECK(*HkdfSha256(ikm, salt, info1) ==
          FromHex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"));
    // A low-order peer point would give the all-zero secret: refused.
    auto weak = AgreeKey(alice, Key256{}, info);
    REQUIRE_FALSE(weak.ok());
    CHECK(weak.error().code() == ErrorCode::kInvalidArgument);
    auto k1 = GenerateX25519KeyPair(), k2 = GenerateX25519KeyPair();
    REQUIRE(k1.ok());
    REQUIRE(k2.ok());
    CHECK(k1->private_key != k2->private_key);
    CHECK(*AgreeKey(k1->private_key, k2->public_key, info) ==
          *AgreeKey(k2->private_key, k1->public_key, info));
  }

  TEST_CASE(
      "AES-GCM share messages open only with their key, session, round, sender and recipient") {
    const Key256 key = FixedKey(1);
    const ShareMessageContext ctx{42, 7, 3, 9};
    const std::vector<uint8_t> plain = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    auto sealed = SealShareMessage(key, ctx, plain);
    REQUIRE(sealed.ok());
    CHECK(sealed->size() == plain.size() + kSealOverhead);
    auto opened = OpenShareMessage(key, ctx, *sealed);
    REQUIRE(opened.ok());
    CHECK(*opened == plain);
    // The nonce comes from the context (round, sender, recipient), not the
    // wire: the same message again gives the same bytes, and the other
    // direction under the same pair key a different keystream, so the two
    // messages a channel key ever seals never share a nonce.
    CHECK(*SealShareMessage(key, ctx, plain) == *sealed);
    auto reverse = SealShareMessage(key, {42, 7, 9, 3}, plain);
    REQUIRE(reverse.ok());
    CHECK(std::vector<uint8_t>(reverse->begin() + 1, reverse->end() - 16) !=
          std::vector<uint8_t>(sealed->begin() + 1, sealed->end() - 16));
    CHECK(*OpenShareMessage(key, {42, 7, 9, 3}, *reverse) == plain);

    auto refused = [&](const Key256& k, const ShareMessageContext& c,
                       const std::vector<uint8_t>& bytes) {
      auto r = OpenShareMessage(k, c, bytes);
      return !r.ok() && r.error().code() == ErrorCode::kUnauthenticated;
    };
    for (size_t i = 1; i < sealed->size(); ++i) {  // every byte after the version: body, tag
      std::vector<uint8_t> tampered = *sealed;
      tampered[i] ^= 0x20;
      CAPTURE(i);
      CHECK(refused(key, ctx, tampered));
    }
    CHECK(refused(key, {42, 8, 3, 9}, *sealed));   // another round
    CHECK(refused(key, {43, 7, 3, 9}, *sealed));   // another session
    CHECK(refused(key, {42, 7, 9, 3}, *sealed));   // sender and recipient swapped
    CHECK(refused(key, {42, 7, 3, 10}, *sealed));  // another recipient
    CHECK(refused(FixedKey(2), ctx, *sealed));
    std::vector<uint8_t> versioned = *sealed;
    versioned[0] = 1;  // the layout with a random IV on the wire, before the eleventh session
    CHECK_FALSE(OpenShareMessage(key, ctx, versioned).ok());
    CHECK_FALSE(OpenShareMessage(key, ctx, std::span(*sealed).first(kSealOverhead - 1)).ok());
    auto empty = SealShareMessage(key, ctx, {});
    REQUIRE(empty.ok());
    CHECK(OpenShareMessage(key, ctx, *empty)->empty());
  }

  TEST_CASE(
      "share bundles round-trip and the decoder refuses anything the encoder would not write") {
    auto key_shares = ShamirSplit(*RandomKey(), 3, Points(5));
    auto seed_shares = ShamirSplit(*RandomKey(), 3, Points(5));
    REQUIRE(key_shares.ok());
    REQUIRE(seed_shares.ok());
    // Client 4 to client 2: both shares at point 3 (recipient + 1, as ShareKeys gives them).
    const ShareBundle bundle{4, 2, (*key_shares)[2], (*seed_shares)[2]};
    auto encoded = EncodeShareBundle(bundle);
    REQUIRE(encoded.ok());
    const std::vector<uint8_t>& bytes = *encoded;
    CHECK(bytes.size() == 1 + 2 * (1 + 5 * 8));  // the pair and the points are not on the wire
    auto back = DecodeShareBundle(bytes, 4, 2);
    REQUIRE(back.ok());
    CHECK(*back == bundle);
    // Opened under another pair, the points come out wrong: reconstruction
    // (and the key check against the advertised key) would fail, and the
    // sealed message's context already refuses it (test above).
    CHECK(DecodeShareBundle(bytes, 4, 3)->mask_key_share.x == 4);
    CHECK(!EncodeShareBundle({4, 3, (*key_shares)[2], (*seed_shares)[2]}).ok());  // point 3 is not 3 + 1
    CHECK(!EncodeShareBundle({4, 2, (*key_shares)[2], (*seed_shares)[1]}).ok());
    CHECK(!DecodeShareBundle(bytes, 4, UINT32_MAX).ok());  // no point 0
    for (size_t cut = 0; cut < bytes.size(); ++cut)
      CHECK_FALSE(DecodeShareBundle(std::span(bytes).first(cut), 4, 2).ok());
    std::vector<uint8_t> trailing = bytes;
    trailing.push_back(0);
    CHECK_FALSE(DecodeShareBundle(trailing, 4, 2).ok());
    for (uint8_t count : {0, 17}) {
      std::vector<uint8_t> bad_count = bytes;
      bad_count[1] = count;
      CHECK_FALSE(DecodeShareBundle(bad_count, 4, 2).ok());
    }
    std::vector<uint8_t> big_y = bytes;
    std::fill_n(big_y.begin() + 2, 8,
                0xff);  // the first y of the first share: not a field element
    CHECK_FALSE(DecodeShareBundle(big_y, 4, 2).ok());
    std::vector<uint8_t> version = bytes;
    version[0] = 1;  // the layout that also sent the pair and the points
    CHECK_FALSE(DecodeShareBundle(version, 4, 2).ok());
  }

  TEST_CASE(
      "the mask PRG is deterministic per seed, in the ring, and passes a chi-square uniformity "
      "test") {
    const Key256 seed = FixedKey(9);
    std::vector<uint64_t> a(1000), b(1000);
    REQUIRE(ExpandMask(seed, 24, a).ok());
    REQUIRE(ExpandMask(seed, 24, b).ok());
    CHECK(a == b);
    CHECK(std::all_of(a.begin(), a.end(), [](uint64_t v) { return v < (uint64_t{1} << 24); }));
    REQUIRE(ExpandMask(FixedKey(10), 24, b).ok());
    CHECK(a != b);
    CHECK_FALSE(ExpandMask(seed, 0, a).ok());
    CHECK_FALSE(ExpandMask(seed, 65, a).ok());

    // A masked all-zero update (the worst case for leaking structure) over Z_2^16,
    // binned by its high and its low byte: both must look uniform.
    std::vector<uint64_t> masked(256 * 1000, 0);
    REQUIRE(ApplyMask(seed, 16, MaskSign::kAdd, masked).ok());
    std::vector<double> high(256, 0), low(256, 0);
    for (uint64_t v : masked) {
      high[v >> 8] += 1;
      low[v & 0xff] += 1;
    }
    CHECK(ChiSquare(high) < ChiSquareCritical(255));
    CHECK(ChiSquare(low) < ChiSquareCritical(255));
    // A constant vector, e.g. all ones, is uniform after masking too (bits = 64).
    std::vector<uint64_t> ones(256 * 1000, 1);
    REQUIRE(ApplyMask(FixedKey(77), 64, MaskSign::kAdd, ones).ok());
    std::vector<double> top(256, 0);
    for (uint64_t v : ones) top[v >> 56] += 1;
    CHECK(ChiSquare(top) < ChiSquareCritical(255));
  }

  TEST_CASE(
      "pairwise and self masks on a Harary graph cancel exactly, with a dropped client recovered "
      "from shares") {
    // Ten clients, 5% corrupt / 33% dropout parameters: k = 6, t = 2. Each client
    // masks its input with its self mask and one pairwise mask per neighbour; the
    // server removes the survivors' self masks (seeds rebuilt from shares) and the
    // dropped client's pairwise masks (its mask key rebuilt from shares).
    constexpr uint32_t n = 10;
    constexpr int bits = 24;
    constexpr size_t dim = 500;
    constexpr uint64_t session = 99;
    constexpr uint32_t round = 4;
    auto params = ComputeSecAggGraphParameters(n, 0.05, 0.33);
    REQUIRE(params.ok());
    REQUIRE(params->degree == 6);
    REQUIRE(params->threshold == 2);
    const uint32_t k = params->degree, t = params->threshold;

    std::vector<X25519KeyPair> keys;
    std::vector<Key256> self_seeds;
    std::vector<std::vector<uint64_t>> inputs(n, std::vector<uint64_t>(dim));
    Rng rng(17);
    for (uint32_t u = 0; u < n; ++u) {
      keys.push_back(*GenerateX25519KeyPair());
      self_seeds.push_back(*RandomKey());
      for (auto& v : inputs[u]) v = rng.NextU64() & RingMask(bits);
    }
    std::vector<std::vector<uint32_t>> neighbours(n);
    for (uint32_t u = 0; u < n; ++u) neighbours[u] = *HararyNeighbours(n, k, u);
    // Share keys: u's shares go to its neighbours, sealed per pair (a channel key
    // from the same agreement, with another purpose label).
    std::map<std::pair<uint32_t, uint32_t>, std::vector<uint8_t>>
        inbox;  // (recipient, sender) -> sealed bundle
    for (uint32_t u = 0; u < n; ++u) {
      std::vector<uint32_t> xs;
      for (uint32_t v : neighbours[u]) xs.push_back(v + 1);
      auto key_shares = *ShamirSplit(keys[u].private_key, t, xs);
      auto seed_shares = *ShamirSplit(self_seeds[u], t, xs);
      for (size_t i = 0; i < xs.size(); ++i) {
        const uint32_t v = neighbours[u][i];
        const Key256 channel = *AgreeKey(keys[u].private_key, keys[v].public_key,
                                         PairKeyInfo("channel", session, round, u, v));
        const ShareBundle bundle{u, v, key_shares[i], seed_shares[i]};
        inbox[{v, u}] =
            *SealShareMessage(channel, {session, round, u, v}, *EncodeShareBundle(bundle));
      }
    }
    // Client 6 drops after sharing its keys; the others send masked inputs.
    constexpr uint32_t kDropped = 6;
    std::vector<uint64_t> sum(dim, 0), expected(dim, 0);
    for (uint32_t u = 0; u < n; ++u) {
      if (u == kDropped) continue;
      std::vector<uint64_t> y = inputs[u];
      REQUIRE(ApplyMask(self_seeds[u], bits, MaskSign::kAdd, y).ok());
      for (uint32_t v : neighbours[u]) {
        const Key256 pair = *AgreeKey(keys[u].private_key, keys[v].public_key,
                                      PairKeyInfo("mask", session, round, u, v));
        REQUIRE(ApplyMask(pair, bits, PairwiseMaskSign(u, v), y).ok());
      }
      for (size_t i = 0; i < dim; ++i) {
        sum[i] = (sum[i] + y[i]) & RingMask(bits);
        expected[i] = (expected[i] + inputs[u][i]) & RingMask(bits);
      }
    }
    CHECK(sum != expected);
    // Unmasking: each survivor opens what its neighbours sent it; the server
    // gathers self-seed shares of survivors and mask-key shares of the dropped.
    std::map<uint32_t, std::vector<ShamirShare>> seed_shares_of, key_shares_of;
    for (uint32_t v = 0; v < n; ++v) {
      if (v == kDropped) continue;
      for (uint32_t u : neighbours[v]) {
        const Key256 channel = *AgreeKey(keys[v].private_key, keys[u].public_key,
                                         PairKeyInfo("channel", session, round, u, v));
        auto plain = OpenShareMessage(channel, {session, round, u, v}, inbox[{v, u}]);
        REQUIRE(plain.ok());
        auto bundle = DecodeShareBundle(*plain, u, v);
        REQUIRE(bundle.ok());
        REQUIRE(bundle->sender == u);
        // An honest client reveals one kind of share per neighbour, never both.
        if (u == kDropped) {
          key_shares_of[u].push_back(bundle->mask_key_share);
        } else {
          seed_shares_of[u].push_back(bundle->self_seed_share);
        }
      }
    }
    for (auto& [u, shares] : seed_shares_of) {
      auto seed = ShamirReconstruct(shares, t, 32);
      REQUIRE(seed.ok());
      Key256 b;
      std::copy(seed->begin(), seed->end(), b.begin());
      REQUIRE(ApplyMask(b, bits, MaskSign::kSubtract, sum).ok());
    }
    auto dropped_key = ShamirReconstruct(key_shares_of[kDropped], t, 32);
    REQUIRE(dropped_key.ok());
    Key256 sk;
    std::copy(dropped_key->begin(), dropped_key->end(), sk.begin());
    CHECK(sk == keys[kDropped].private_key);
    for (uint32_t v : neighbours[kDropped]) {
      // Survivor v applied sign(v, dropped) to this mask; take it back out.
      const Key256 pair =
          *AgreeKey(sk, keys[v].public_key, PairKeyInfo("mask", session, round, kDropped, v));
      const MaskSign undo =
          PairwiseMaskSign(v, kDropped) == MaskSign::kAdd ? MaskSign::kSubtract : MaskSign::kAdd;
      REQUIRE(ApplyMask(pair, bits, undo, sum).ok());
    }
    CHECK(sum == expected);
  }
}

}  // namespace
}  // namespace frugal::privacy
