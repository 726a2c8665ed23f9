// Writes the seed corpus: valid payloads of every codec and mode (uplink-sparse
// version 2 with plain and adaptive Rice sections, and one version-1 frame), small
// enough to commit. Usage: frugal-fuzz-corpus-gen OUT_DIR  (creates OUT_DIR/<target>/seed-*)
// Every seed is the same bytes every generation: the SecAgg+ messages' keys,
// shares and signatures come from OpenSSL's RNG, which this program (only)
// replaces with a seeded stream (SeededOpenSslRandom below).

// RAND_set_rand_method is deprecated in OpenSSL 3.0 but is still the one
// public way to make RAND_bytes (and ECDSA's nonces) deterministic in a
// process; this generator is the only user.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/rand.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <fstream>
#include <string>
#include <vector>

#include "frugal/codec/adaptive_rice.h"
#include "frugal/codec/downlink.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"
#include "frugal/codec/uplink.h"
#include "frugal/codec/zero_set.h"
#include "frugal/core/random.h"
#include "frugal/privacy/secagg.h"
#include "frugal/round/model_payload.h"
#include "fuzz_common.h"
#include "fuzz_secagg_common.h"

namespace {

using namespace frugal;

std::vector<float> Gaussian(size_t n, uint64_t seed, double sigma) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(sigma * rng.Normal());
  return v;
}

// Shamir shares as privacy::ShamirSplit cuts them (7-byte chunks, one
// polynomial each), but with coefficients from a seeded Rng instead of
// RAND_bytes, so the committed seeds are the same bytes every generation.
std::vector<privacy::ShamirShare> SeededShamirSplit(const std::vector<uint8_t>& secret, uint32_t threshold,
                                                    const std::vector<uint32_t>& xs, uint64_t seed) {
  Rng rng(seed);
  std::vector<privacy::ShamirShare> shares(xs.size());
  for (size_t s = 0; s < xs.size(); ++s) shares[s].x = xs[s];
  const size_t chunks = (secret.size() + privacy::kShamirChunkBytes - 1) / privacy::kShamirChunkBytes;
  for (size_t c = 0; c < chunks; ++c) {
    std::vector<uint64_t> coefficients(threshold);
    for (size_t b = 0; b < privacy::kShamirChunkBytes && c * privacy::kShamirChunkBytes + b < secret.size(); ++b) {
      coefficients[0] |= uint64_t{secret[c * privacy::kShamirChunkBytes + b]} << (8 * b);
    }
    for (uint32_t i = 1; i < threshold; ++i) coefficients[i] = rng.UniformInt(privacy::kShamirPrime);
    for (auto& share : shares) {
      unsigned __int128 y = 0;  // Horner's rule mod 2^61 - 1
      for (size_t i = threshold; i-- > 0;) y = (y * share.x + coefficients[i]) % privacy::kShamirPrime;
      share.y.push_back(static_cast<uint64_t>(y));
    }
  }
  return shares;
}

// OpenSSL's RNG for the rest of the process: a seeded Rng stream. A
// RAND_METHOD has no user pointer, hence the file-level stream. Never in a
// library: the protocol's secrets must come from RAND_bytes' real entropy.
Rng* seeded_stream = nullptr;
int SeededBytes(unsigned char* out, int num) {
  for (int i = 0; i < num; ++i) out[i] = static_cast<unsigned char>(seeded_stream->NextU64() >> 56);
  return 1;
}
int SeededStatus() { return 1; }
// Called once, before the first message is generated.
void SeededOpenSslRandom(uint64_t seed) {
  static Rng stream(seed);
  static const RAND_METHOD method = {nullptr, SeededBytes, nullptr, nullptr, SeededBytes, SeededStatus};
  seeded_stream = &stream;
  if (RAND_set_rand_method(&method) != 1) {
    std::fprintf(stderr, "corpus generator: cannot install the seeded RNG\n");
    std::exit(1);
  }
}

int Write(const std::filesystem::path& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return f ? 0 : 1;
}

template <typename R>
auto Must(R r) {
  if (!r.ok()) {
    std::fprintf(stderr, "corpus generator: %s\n", r.error().ToString().c_str());
    std::exit(1);
  }
  return std::move(r).value();
}

void MustOk(const Status& st) {
  if (!st.ok()) {
    std::fprintf(stderr, "corpus generator: %s\n", st.error().ToString().c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path out(argv[1]);
  int failures = 0;
  int n = 0;

  const std::filesystem::path up = out / "fuzz_uplink_decode";
  for (uint32_t dim : {64u, 1000u}) {
    const std::vector<float> u = Gaussian(dim, dim, 0.01);
    for (double density : {0.02, 0.2, 1.0}) {
      for (ValueCoding c : {ValueCoding::kTernary, ValueCoding::kInt8, ValueCoding::kFp16, ValueCoding::kFp32}) {
        UplinkConfig cfg;
        cfg.density = density;
        cfg.values = c;
        cfg.try_zstd = c != ValueCoding::kTernary;
        failures += Write(up, "seed-" + std::to_string(n++), Must(EncodeUplink(u, cfg, {})));
      }
    }
    UplinkConfig dense;
    dense.dense = true;
    failures += Write(up, "seed-" + std::to_string(n++), Must(EncodeUplink(u, dense, {})));
  }
  SparseUpdate repetitive;  // compressible, so the zstd stage is kept
  repetitive.dim = 4000;
  for (uint32_t i = 0; i < 200; ++i) {
    repetitive.indices.push_back(i * 20);
    repetitive.values.push_back(1.0f);
  }
  failures += Write(up, "seed-" + std::to_string(n++), Must(EncodeSparseUpdate(repetitive, ValueCoding::kFp32, true)));
  // Clustered positions (one dense block, a few runs): version-2 adaptive Rice sections.
  for (ValueCoding c : {ValueCoding::kTernary, ValueCoding::kInt8}) {
    SparseUpdate clustered;
    clustered.dim = 5000;
    for (uint32_t i = 4000; i < 4300; ++i) clustered.indices.push_back(i);
    for (uint32_t i = 4700; i < 5000; i += 3) clustered.indices.push_back(i);
    for (size_t j = 0; j < clustered.indices.size(); ++j) clustered.values.push_back(j % 3 ? 0.5f : -0.25f);
    failures += Write(up, "seed-" + std::to_string(n++), Must(EncodeSparseUpdate(clustered, c)));
  }
  {  // A version-1 frame (plain Rice, the byte is b), which this build still decodes.
    const std::vector<uint32_t> idx = {3, 70, 71, 500, 999};
    const int b = ChooseRiceParameter(idx, 1000);
    std::vector<uint8_t> body = {static_cast<uint8_t>(ValueCoding::kFp16), static_cast<uint8_t>(b)};
    const std::vector<uint8_t> coded = Must(EncodeRiceIndices(idx, 1000, b));
    body.insert(body.end(), coded.begin(), coded.end());
    for (size_t j = 0; j < idx.size(); ++j) body.insert(body.end(), {0x00, 0x3c});  // fp16 1.0
    FrameHeader h;
    h.codec = CodecId::kUplinkSparse;
    h.version = 1;
    h.dim = 1000;
    h.count = static_cast<uint32_t>(idx.size());
    std::vector<uint8_t> v1;
    if (!AppendFrame(h, body, &v1).ok()) return 1;
    failures += Write(up, "seed-v1-" + std::to_string(n++), v1);
  }

  const std::filesystem::path down = out / "fuzz_downlink_decode";
  n = 0;
  for (uint32_t dim : {50u, 700u}) {
    const std::vector<float> base = fuzz::Base(dim);
    std::vector<float> target = base;
    const std::vector<float> step = Gaussian(dim, dim + 1, 0.01);
    for (uint32_t i = 0; i < dim; ++i) target[i] += step[i];
    for (int bits : {8, 4, 2, 0}) {
      for (bool delta : {false, true}) {
        DownlinkConfig cfg;
        cfg.bits = bits;
        cfg.block_size = bits == 2 ? 32 : 256;
        cfg.stochastic = delta;
        auto enc = EncodeDownlink(target, delta ? std::span<const float>(base) : std::span<const float>(), cfg);
        failures += Write(down, "seed-" + std::to_string(n++), Must(std::move(enc)).bytes);
      }
    }
  }
  std::vector<float> wide = Gaussian(300, 5, 1e5);  // fp32 block parameters
  failures += Write(down, "seed-" + std::to_string(n++), Must(EncodeDownlink(wide, {}, DownlinkConfig{})).bytes);

  // Chains of ternary steps whose supports overlap (as consecutive broadcast steps'
  // do), one with an int8-like step of many levels, merged into one piece.
  const std::filesystem::path merged = out / "fuzz_merged_steps";
  n = 0;
  for (uint32_t dim : {64u, 1000u}) {
    for (uint32_t t_count : {1u, 3u, 12u}) {
      Rng srng(dim * 31 + t_count);
      std::vector<SparseUpdate> steps;
      for (uint32_t t = 0; t < t_count; ++t) {
        SparseUpdate u;
        u.dim = dim;
        const float mu = 0.001f * static_cast<float>(t + 1);
        const bool many_levels = dim == 1000 && t == 1;
        for (uint32_t i = 0; i < dim; ++i) {
          if (srng.UniformInt(dim < 100 ? 4 : 20) != 0 && i % 7 != t % 7) continue;
          u.indices.push_back(i);
          const float sign = srng.UniformInt(2) ? 1.0f : -1.0f;
          u.values.push_back(many_levels ? mu * static_cast<float>(1 + srng.UniformInt(9)) * sign : mu * sign);
        }
        steps.push_back(std::move(u));
      }
      const std::vector<uint8_t> piece = Must(EncodeMergedSteps(steps, dim));
      failures += Write(merged, "seed-" + std::to_string(n++), piece);
      // Format version 2 (the -m, +m level pair as m, neighbour contexts) of the same steps.
      failures += Write(merged, "v2-seed-" + std::to_string(n - 1), Must(EncodeMergedSteps(steps, dim, 2)));
      // Version 3: the union coded given a support guide (fuzz::Guide, which the target decodes against).
      failures += Write(merged, "v3-seed-" + std::to_string(n - 1),
                        Must(EncodeMergedSteps(steps, dim, 3, fuzz::Guide(dim))));
      // Version 4: each step coded given its round's support, rebuilt from a fixed history (fuzz::V4Supports).
      std::vector<uint32_t> rounds;
      for (uint32_t t = 0; t < t_count; ++t) rounds.push_back(3 + 2 * t + t % 2);
      failures += Write(merged, "v4-seed-" + std::to_string(n - 1),
                        Must(EncodeMergedStepsV4(steps, rounds, dim, fuzz::V4Supports(dim))));
      if (t_count == 3) {  // the same steps as a kind-3 model payload from version 1 (fuzz_model_payload)
        const std::span<const uint8_t> one(piece);
        const ModelPayloadHeader h{ModelPayloadKind::kMerged, 1, 1 + t_count, dim, 1};
        failures += Write(out / "fuzz_model_payload", "merged-" + std::to_string(dim) + ".bin",
                          EncodeModelPayload(h, std::span(&one, 1)));
        const std::vector<uint8_t> piece2 = Must(EncodeMergedSteps(steps, dim, 2));
        const std::span<const uint8_t> one2(piece2);
        failures += Write(out / "fuzz_model_payload", "merged-v2-" + std::to_string(dim) + ".bin",
                          EncodeModelPayload(h, std::span(&one2, 1)));
        const std::vector<uint8_t> piece3 = Must(EncodeMergedSteps(steps, dim, 3, fuzz::Guide(dim)));
        const std::span<const uint8_t> one3(piece3);
        failures += Write(out / "fuzz_model_payload", "merged-v3-" + std::to_string(dim) + ".bin",
                          EncodeModelPayload(h, std::span(&one3, 1)));
      }
    }
  }

  const std::filesystem::path rice = out / "fuzz_rice_decode";
  n = 0;
  Rng rng(17);
  for (uint32_t dim : {100u, 5000u, 100000u}) {
    for (uint32_t count : {1u, 10u, 60u}) {
      std::vector<uint32_t> idx;
      for (uint32_t i = 0; i < dim && idx.size() < count; ++i) {
        if (rng.UniformInt(dim - i) < count - idx.size()) idx.push_back(i);
      }
      const int b = ChooseRiceParameter(idx, dim);
      const std::vector<uint8_t> coded = Must(EncodeRiceIndices(idx, dim, b));
      std::vector<uint8_t> input = {static_cast<uint8_t>(idx.size()), static_cast<uint8_t>(idx.size() >> 8),
                                    static_cast<uint8_t>(dim), static_cast<uint8_t>(dim >> 8),
                                    static_cast<uint8_t>(dim >> 16), static_cast<uint8_t>(dim >> 24),
                                    static_cast<uint8_t>(b)};
      input.insert(input.end(), coded.begin(), coded.end());
      failures += Write(rice, "seed-" + std::to_string(n++), input);
    }
  }
  // Adaptive Rice sections (mode bit 7): clustered runs, a dense block, one far index.
  std::vector<std::vector<uint32_t>> clustered_sets;
  clustered_sets.push_back({});
  for (uint32_t i = 100; i < 160; ++i) clustered_sets.back().push_back(i);
  clustered_sets.push_back({});
  for (uint32_t start : {5u, 900u, 3000u, 4900u}) {
    for (uint32_t i = start; i < start + 15; i += 1 + i % 2) clustered_sets.back().push_back(i);
  }
  clustered_sets.push_back({0, 4999});
  for (const auto& idx : clustered_sets) {
    const uint32_t dim = 5000;
    const int b = ChooseRiceParameter(idx, dim);
    const std::vector<uint8_t> coded = Must(EncodeAdaptiveRiceIndices(idx, dim, b));
    std::vector<uint8_t> input = {static_cast<uint8_t>(idx.size()), static_cast<uint8_t>(idx.size() >> 8),
                                  static_cast<uint8_t>(dim), static_cast<uint8_t>(dim >> 8),
                                  static_cast<uint8_t>(dim >> 16), static_cast<uint8_t>(dim >> 24),
                                  static_cast<uint8_t>(0x80 | b)};
    input.insert(input.end(), coded.begin(), coded.end());
    failures += Write(rice, "seed-adaptive-" + std::to_string(n++), input);
  }
  // SecAgg+ share bundles (mode 0) and the same sealed (mode 1), from client 3
  // to client 9 (the fuzz context's pair), so both shares sit at point 10. The
  // nonce comes from the context and the shares' coefficients from a seeded
  // Rng: the seeds are the same every generation.
  const std::filesystem::path share = out / "fuzz_secagg_share";
  for (size_t secret_size : {32u, 11u}) {
    const std::vector<uint8_t> secret(secret_size, 0xa5), seed(secret_size, 0x5a);
    const std::vector<uint32_t> xs = {10, 2, 3, 4};
    const auto shares = SeededShamirSplit(secret, 3, xs, 1000 + secret_size);
    const auto seed_shares = SeededShamirSplit(seed, 3, xs, 2000 + secret_size);
    // They are real shares: all four agree on one polynomial and give the secret back.
    if (Must(privacy::ShamirReconstruct(shares, 3, secret_size)) != secret ||
        Must(privacy::ShamirReconstruct(seed_shares, 3, secret_size)) != seed) {
      std::fprintf(stderr, "corpus_gen: the seeded Shamir shares do not reconstruct their secret\n");
      return 1;
    }
    const std::vector<uint8_t> bundle = Must(privacy::EncodeShareBundle({3, 9, shares[0], seed_shares[0]}));
    std::vector<uint8_t> plain = {0};
    plain.insert(plain.end(), bundle.begin(), bundle.end());
    failures += Write(share, "seed-" + std::to_string(n++), plain);
    const auto sealed = Must(privacy::SealShareMessage(fuzz::SecAggShareKey(), fuzz::kSecAggShareContext, bundle));
    std::vector<uint8_t> input = {1};
    input.insert(input.end(), sealed.begin(), sealed.end());
    failures += Write(share, "seed-" + std::to_string(n++), input);
  }
  // SecAgg+ messages of every type, from one real round of the fuzz target's
  // configuration, plus identity-bound keys and directories from the fuzz
  // target's simulated CA (modes 3 and 4). The keys, self-mask seeds, Shamir
  // coefficients and ECDSA nonces come from the seeded RNG: the same bytes
  // every generation.
  SeededOpenSslRandom(0x5eca99);
  const std::filesystem::path messages = out / "fuzz_secagg_messages";
  for (bool bound : {false, true}) {
    const privacy::SecureRoundConfig cfg = fuzz::SecAggFuzzConfig(bound);
    const auto ca = Must(privacy::SimulatedIdentityAuthority::Create(fuzz::kSecAggFuzzCaSeed));
    auto server = Must(bound ? privacy::SecureAggServer::Create(cfg, ca.ca_public())
                             : privacy::SecureAggServer::Create(cfg));
    std::vector<privacy::SecureAggClient> clients;
    auto seed = [&](const std::string& name, uint8_t mode, const std::vector<uint8_t>& bytes) {
      std::vector<uint8_t> input = {mode};
      input.insert(input.end(), bytes.begin(), bytes.end());
      failures += Write(messages, bound ? name + "_identity" : name, input);
    };
    for (uint32_t u = 0; u < cfg.clients; ++u) {
      std::optional<privacy::SecureIdentity> id;
      if (bound) id = Must(ca.Issue(fuzz::SecAggFuzzClientId(u)));
      clients.push_back(Must(privacy::SecureAggClient::Create(cfg, u, id)));
      const auto msg = Must(clients.back().AdvertiseKeys());
      if (u == 3) seed("advertise", bound ? 3 : 1, msg);
      const std::string name = bound ? std::to_string(fuzz::SecAggFuzzClientId(u)) : std::string();
      MustOk(server.OnAdvertiseKeys(u, msg, name));
    }
    auto dirs = Must(server.CloseAdvertiseKeys());
    seed("directory", bound ? 4 : 2, dirs.at(0));
    if (bound) {
      // An agent's credential file (mode 5).
      const auto id = Must(ca.Issue(fuzz::SecAggFuzzClientId(0)));
      seed("credential_file", 5, privacy::EncodeIdentityCredentialFile(id.credential));
      continue;
    }
    for (auto& [u, d] : dirs) {
      const auto msg = Must(clients[u].ShareKeys(d));
      if (u == 0) seed("share_keys", 0, msg);
      MustOk(server.OnShareKeys(u, msg));
    }
    auto inboxes = Must(server.CloseShareKeys());
    seed("inbox", 0, inboxes.at(0));
    for (auto& [u, inbox] : inboxes) {
      const std::vector<uint64_t> input(cfg.length, u);
      const auto msg = Must(clients[u].MaskedInput(inbox, input));
      if (u == 0) seed("masked", 0, msg);
      MustOk(server.OnMaskedInput(u, msg));
    }
    auto lists = Must(server.CloseMaskedInput());
    seed("survivor_list", 0, lists.at(0));
    for (auto& [u, l] : lists) {
      const auto msg = Must(clients[u].SignSurvivors(l));
      if (u == 0) seed("survivor_signature", 0, msg);
      MustOk(server.OnSurvivorSignature(u, msg));
    }
    auto sigs = Must(server.CloseSurvivorSignatures());
    seed("survivor_signatures", 0, sigs.at(0));
    seed("unmask_response", 0, Must(clients[0].Unmask(sigs.at(0))));
    // The retired type 6 in version 2's header: the decoder must refuse it.
    seed("retired_unmask_request", 0, {2, 6, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, 7, 0});
  }
  // Zero sets (the trigger scan's pruned inputs' weights): alone, after a
  // ternary step, and empty; then as a chain piece and after a full model in
  // model payloads (the fuzz_model_payload target).
  const std::filesystem::path zs = out / "fuzz_zero_set";
  const std::filesystem::path mp = out / "fuzz_model_payload";
  {
    const uint32_t dim = 1000;
    std::vector<uint32_t> zeros;
    for (uint32_t o = 0; o < 10; ++o) {
      for (uint32_t p : {96u, 97u, 98u, 99u}) zeros.push_back(o * 100 + p);
    }
    const std::vector<float> u = Gaussian(dim, 31, 0.01);
    const std::vector<uint8_t> step = Must(EncodeUplink(u, UplinkConfig{.dense = false, .density = 0.01}, {}));
    const std::vector<uint8_t> with_step = Must(EncodeZeroSet(step, zeros, dim));
    const std::vector<uint8_t> alone = Must(EncodeZeroSet({}, zeros, dim));
    failures += Write(zs, "seed-step", with_step);
    failures += Write(zs, "seed-alone", alone);
    failures += Write(zs, "seed-empty", Must(EncodeZeroSet({}, {}, dim)));
    const std::span<const uint8_t> chain_piece(with_step);
    failures += Write(mp, "chain-zeros.bin",
                      EncodeModelPayload({ModelPayloadKind::kChain, 0, 1, dim, 1}, std::span(&chain_piece, 1)));
    const std::vector<uint8_t> full = Must(EncodeDownlink(fuzz::Base(dim), {}, DownlinkConfig{})).bytes;
    const std::vector<std::span<const uint8_t>> full_pieces = {full, alone};
    failures += Write(mp, "full-zeros.bin", EncodeModelPayload({ModelPayloadKind::kFull, 0, 1, dim, 2}, full_pieces));
  }
  if (failures) std::fprintf(stderr, "corpus generator: %d files could not be written\n", failures);
  return failures ? 1 : 0;
}
