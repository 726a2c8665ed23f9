// Structured pruning (frugal/model/prune.h) and its round path: the pruned
// model against the unpruned one with those units zeroed, FLOPs against the
// pruned GEMMs' multiply-adds, the parameter map against a plain index loop,
// the engine's state and a client's chain through a shape change, and the
// shape change's decoder on corrupted bytes. Tiny synthetic models and
// batches: the properties are exact ones, which no data set makes clearer.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/model/model.h"
#include "frugal/model/prune.h"
#include "frugal/round/engine.h"
#include "frugal/round/lean_round.h"
#include "frugal/round/model_payload.h"
#include "model/random_batch.h"

namespace frugal {
namespace {

std::vector<float> RandomVector(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = 2.0f * rng.UniformFloat() - 1.0f;
  return v;
}

std::vector<size_t> ToSize(const std::vector<uint32_t>& s) { return {s.begin(), s.end()}; }

// The old index of every new parameter, written as plain loops over (layer, unit, input).
std::vector<uint32_t> ReferenceMap(const MlpShapeChange& c) {
  const std::vector<uint32_t>& s = c.old_sizes;
  std::vector<uint32_t> map;
  size_t offset = 0;
  for (size_t l = 0; l + 1 < s.size(); ++l) {
    auto kept_in = [&](uint32_t i) {
      if (l == 0) return true;
      for (uint32_t k : c.kept[l - 1]) if (k == i) return true;
      return false;
    };
    auto kept_out = [&](uint32_t o) {
      if (l + 2 == s.size()) return true;
      for (uint32_t k : c.kept[l]) if (k == o) return true;
      return false;
    };
    for (uint32_t o = 0; o < s[l + 1]; ++o) {
      if (!kept_out(o)) continue;
      for (uint32_t i = 0; i < s[l]; ++i) {
        if (kept_in(i)) map.push_back(static_cast<uint32_t>(offset + o * s[l] + i));
      }
    }
    for (uint32_t o = 0; o < s[l + 1]; ++o) {
      if (kept_out(o)) map.push_back(static_cast<uint32_t>(offset + s[l + 1] * s[l] + o));
    }
    offset += size_t{s[l + 1]} * s[l] + s[l + 1];
  }
  return map;
}

const MlpShapeChange kChange{{12, 9, 7, 4}, {{0, 2, 3, 7}, {1, 4, 5}}};

// A small Cnn (8x8x2 images, 3x3 kernels, 4 and 5 channels, 6 dense units, 3
// classes) and a change keeping 3, 3 and 4 of them.
const CnnGeometry kGeometry{8, 8, 3};
const MlpShapeChange kCnnChange{{2, 4, 5, 6, 3}, {{0, 2, 3}, {1, 2, 4}, {0, 3, 4, 5}}, kGeometry};

Cnn MakeCnn(const std::vector<uint32_t>& s) {
  return Cnn(CnnConfig{.height = 8, .width = 8, .channels = s[0], .kernel = 3, .conv1_channels = s[1],
                       .conv2_channels = s[2], .dense_units = s[3], .num_classes = s[4]});
}

bool Holds(const std::vector<uint32_t>& kept, size_t unit) {
  for (uint32_t k : kept) if (k == unit) return true;
  return false;
}

// The CNN's parameter map, as a plain filter over the old parameters: every
// index decomposed into (layer, output unit, input unit) by the layout of
// model.h, kept when both units are, in the old order (which the pruned
// model's layout keeps).
std::vector<uint32_t> ReferenceCnnMap(const MlpShapeChange& c) {
  const std::vector<uint32_t>& s = c.old_sizes;
  const size_t kk = 9, pooled = 2 * 2;  // 3x3 kernel; 8x8 pooled twice
  // Blocks in order: {count, rows (output units, fastest), kept rows, kept inputs (null: all)}.
  struct Block { size_t count, rows; const std::vector<uint32_t>* out; const std::vector<uint32_t>* in; size_t in_stride; };
  const std::vector<Block> blocks{
      {s[1] * kk * s[0], s[1], &c.kept[0], nullptr, 0}, {s[1], s[1], &c.kept[0], nullptr, 0},
      {s[2] * kk * s[1], s[2], &c.kept[1], &c.kept[0], s[1]}, {s[2], s[2], &c.kept[1], nullptr, 0},
      // The dense layer is unit-major: its "rows" are the flat inputs (pixel, channel), channel fastest.
      {s[3] * pooled * s[2], pooled * s[2], nullptr, nullptr, 0}, {s[3], s[3], &c.kept[2], nullptr, 0},
      {s[4] * s[3], s[3], &c.kept[2], nullptr, 0}, {s[4], s[4], nullptr, nullptr, 0}};
  std::vector<uint32_t> map;
  size_t offset = 0;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const Block& k = blocks[b];
    for (size_t i = 0; i < k.count; ++i) {
      const size_t row = i % k.rows, col = i / k.rows;
      bool keep = (k.out == nullptr || Holds(*k.out, row)) && (k.in == nullptr || Holds(*k.in, col % k.in_stride));
      if (b == 4) keep = Holds(c.kept[1], row % s[2]) && Holds(c.kept[2], col);
      if (keep) map.push_back(static_cast<uint32_t>(offset + i));
    }
    offset += k.count;
  }
  return map;
}

// A server state's floats (RoundEngine::ServerState).
std::vector<float> StateFloats(const std::vector<uint8_t>& b) {
  std::vector<float> f(b.size() / 4);
  std::memcpy(f.data(), b.data(), b.size());
  return f;
}

// The engine's model and released average are the old ones through the reference map.
void CheckModelsFollow(const RoundEngine& engine, const std::vector<float>& before,
                       const std::vector<float>& release_before, const std::vector<uint32_t>& ref) {
  REQUIRE(engine.dim() == ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    CHECK(engine.global_model()[i] == before[ref[i]]);
    CHECK(engine.release_model()[i] == release_before[ref[i]]);
  }
}

}  // namespace

TEST_SUITE("model") {
TEST_CASE("a pruned MLP computes what the unpruned one does with the pruned units zeroed") {
  const Mlp full(ToSize(kChange.old_sizes));
  const Mlp pruned(ToSize(kChange.NewSizes()));
  std::vector<float> params = RandomVector(full.num_params(), 3);
  const std::vector<uint32_t> map = ShapeChangeParamMap(kChange);
  REQUIRE(map.size() == pruned.num_params());
  CHECK(map == ReferenceMap(kChange));
  const std::vector<float> small = ApplyParamMap(map, params);
  // Zero every parameter that is not kept: a pruned unit's incoming weights,
  // bias and outgoing weights.
  std::vector<bool> kept(params.size(), false);
  for (uint32_t i : map) kept[i] = true;
  for (size_t i = 0; i < params.size(); ++i) if (!kept[i]) params[i] = 0.0f;

  Rng rng(5);
  const size_t n = 20;
  std::vector<float> x(n * 12);
  for (float& v : x) v = rng.UniformFloat();
  std::vector<int32_t> y(n);
  for (auto& v : y) v = static_cast<int32_t>(rng.UniformInt(4));
  const BatchView batch{x.data(), y.data(), n};
  auto ws_full = full.MakeWorkspace();
  auto ws_small = pruned.MakeWorkspace();
  std::vector<float> g_full(full.num_params()), g_small(pruned.num_params());
  const double loss_full = full.LossAndGradient(params, batch, g_full, *ws_full);
  const double loss_small = pruned.LossAndGradient(small, batch, g_small, *ws_small);
  CHECK(loss_small == doctest::Approx(loss_full).epsilon(1e-6));
  for (size_t i = 0; i < map.size(); ++i) CHECK(g_small[i] == doctest::Approx(g_full[map[i]]).epsilon(1e-5));
  std::vector<int32_t> p_full(n), p_small(n);
  full.Predict(params, batch, p_full, *ws_full);
  pruned.Predict(small, batch, p_small, *ws_small);
  CHECK(p_full == p_small);
}

TEST_CASE("a pruned MLP's FLOPs are its GEMMs' multiply-adds, and the 2NN's schedule halves them") {
  const std::vector<uint32_t> sizes = kChange.NewSizes();
  const Mlp pruned(ToSize(sizes));
  // Forward: 2 x (in x out) per layer plus the bias adds; backward: the weight
  // gradient's GEMM and bias adds, and the input gradient's GEMM past layer 0.
  double fwd = 0, bwd = 0;
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    fwd += 2.0 * sizes[l] * sizes[l + 1] + sizes[l + 1];
    bwd += 2.0 * sizes[l] * sizes[l + 1] + sizes[l + 1] + (l > 0 ? 2.0 * sizes[l] * sizes[l + 1] : 0.0);
  }
  CHECK(pruned.flops_per_example().forward == fwd);
  CHECK(pruned.flops_per_example().backward == bwd);
  CHECK(MlpTrainFlops(sizes) == fwd + bwd);
  CHECK(MlpParamCount(sizes) == pruned.num_params());

  const std::vector<uint32_t> twonn{784, 200, 200, 10};
  const std::vector<uint32_t> w = WidthsForFlopsFraction(twonn, 0.5);
  REQUIRE(w.size() == 2);
  CHECK(w[0] == w[1]);
  const double all = MlpTrainFlops(twonn);
  CHECK(MlpTrainFlops(std::vector<uint32_t>{784, w[0], w[1], 10}) <= 0.5 * all);
  CHECK(MlpTrainFlops(std::vector<uint32_t>{784, w[0] + 1, w[1] + 1, 10}) > 0.5 * all);
  const PruneConfig cfg{.target_flops_fraction = 0.5, .start_round = 10, .steps = 2, .every = 5};
  CHECK(!PruneStepWidths(cfg, 9, twonn));
  CHECK(!PruneStepWidths(cfg, 12, twonn));
  CHECK(!PruneStepWidths(cfg, 20, twonn));
  CHECK(*PruneStepWidths(cfg, 10, twonn) == WidthsForFlopsFraction(twonn, 0.75));
  CHECK(*PruneStepWidths(cfg, 15, twonn) == w);
}

TEST_CASE("the kept units are the ones with the largest in-and-out weight norms") {
  const std::vector<uint32_t> sizes{3, 4, 2};
  // Units' weights set so the norms order 2 > 0 > 3 > 1.
  std::vector<float> p(MlpParamCount(sizes), 0.0f);
  const float in_w[4] = {2, 0.5f, 3, 1};
  for (size_t u = 0; u < 4; ++u) p[u * 3] = in_w[u];
  const auto scores = UnitScores(sizes, p);
  CHECK(scores[0][2] == doctest::Approx(3.0));
  p[16 + 1] = 0.1f;  // layer 1's weight from unit 1 to output 0: sqrt(0.25 + 0.01)
  CHECK(UnitScores(sizes, p)[0][1] == doctest::Approx(std::sqrt(0.26)));
  const MlpShapeChange c = ChooseKeptUnits(sizes, p, std::vector<uint32_t>{2});
  CHECK(c.kept[0] == std::vector<uint32_t>{0, 2});
}

TEST_CASE("a shape change carries the engine's model and state, and a client's chain, exactly") {
  EngineConfig cfg;
  cfg.pipeline = Pipeline::kFrugal;
  cfg.server_opt.momentum = 0.9f;
  cfg.release_ema = 0.5;
  cfg.robust.rule = RobustRule::kCenteredClip;
  cfg.robust.clip_bound = 10;
  const size_t d = MlpParamCount(kChange.old_sizes);
  RoundEngine engine(RandomVector(d, 7), cfg);
  std::vector<float> client = std::vector<float>(engine.global_model().begin(), engine.global_model().end());
  // One round, so the residual, momentum, release average and centre are not zero.
  const uint64_t ids[] = {1, 2};
  REQUIRE(engine.OpenRound(1, ids).ok());
  std::vector<float> residual = RandomVector(d, 11);
  for (uint64_t id : ids) {
    auto up = EncodeUplink(RandomVector(d, 20 + id), UplinkConfig{.dense = false, .density = 0.3}, residual);
    REQUIRE(up.ok());
    REQUIRE(engine.Ingest(1, id, 1, *up, 1.0).ok());
  }
  REQUIRE(engine.CloseRound(1).ok());
  REQUIRE(engine.version() == 2);
  const std::vector<float> before(engine.global_model().begin(), engine.global_model().end());
  const std::vector<float> release_before(engine.release_model().begin(), engine.release_model().end());
  const std::vector<uint8_t> state_before = engine.ServerState();

  auto v = engine.ApplyShapeChange(kChange);
  REQUIRE(v.ok());
  CHECK(*v == 3);
  const std::vector<uint32_t> ref = ReferenceMap(kChange);
  const size_t nd = ref.size();
  CheckModelsFollow(engine, before, release_before, ref);
  // Server state: residual, momentum, release average (d floats each), then the
  // centre's bound and the centre; each block follows the map.
  const std::vector<float> old_state = StateFloats(state_before), new_state = StateFloats(engine.ServerState());
  REQUIRE(old_state.size() == 4 * d + 1);
  REQUIRE(new_state.size() == 4 * nd + 1);
  for (size_t block = 0; block < 4; ++block) {
    const size_t head = block == 3 ? 1 : 0, old_at = block * d + head, new_at = block * nd + head;
    if (block == 3) CHECK(new_state[block * nd] == old_state[block * d]);
    for (size_t i = 0; i < nd; ++i) CHECK(new_state[new_at + i] == old_state[old_at + ref[i]]);
  }
  // A client's residual follows the same map.
  const std::vector<float> moved = ApplyParamMap(ShapeChangeParamMap(kChange), residual);
  for (size_t i = 0; i < nd; ++i) CHECK(moved[i] == residual[ref[i]]);

  // A client holding version 1 (old shape) gets round 1's step and the shape change.
  auto chain = engine.ModelPayloadFor(1);
  REQUIRE(chain.ok());
  std::vector<uint32_t> sizes;
  auto held = ApplyModelPayload(**chain, 1, client, static_cast<uint32_t>(d), &sizes);
  REQUIRE(held.ok());
  CHECK(*held == 3);
  CHECK(sizes == kChange.NewSizes());
  CHECK(client == std::vector<float>(engine.global_model().begin(), engine.global_model().end()));
  // A client's residual follows the chain's shape change (ApplyModelPayload's follower), checked
  // against the reference map; a follower of another dimension is left alone.
  {
    std::vector<float> v1_copy = RandomVector(d, 7);
    std::vector<float> follower = residual;
    REQUIRE(ApplyModelPayload(**chain, 1, v1_copy, static_cast<uint32_t>(d), nullptr, &follower).ok());
    REQUIRE(follower.size() == nd);
    for (size_t i = 0; i < nd; ++i) CHECK(follower[i] == residual[ref[i]]);
    std::vector<float> v1_again = RandomVector(d, 7), odd(5, 1.0f);
    REQUIRE(ApplyModelPayload(**chain, 1, v1_again, static_cast<uint32_t>(d), nullptr, &odd).ok());
    CHECK(odd == std::vector<float>(5, 1.0f));
  }
  // A client holding nothing gets the pruned shape with the full model.
  std::vector<float> fresh;
  auto full = engine.ModelPayloadFor(0);
  REQUIRE(full.ok());
  sizes.clear();
  REQUIRE(ApplyModelPayload(**full, 0, fresh, static_cast<uint32_t>(d), &sizes).ok());
  CHECK(sizes == kChange.NewSizes());
  CHECK(fresh.size() == nd);
  // A full model maps a residual of the unpruned dimension through its shape, and zeroes one of any other.
  {
    std::vector<float> fresh2, follower = residual, stale(nd + 3, 1.0f);
    REQUIRE(ApplyModelPayload(**full, 0, fresh2, static_cast<uint32_t>(d), nullptr, &follower).ok());
    REQUIRE(follower.size() == nd);
    for (size_t i = 0; i < nd; ++i) CHECK(follower[i] == residual[ref[i]]);
    std::vector<float> fresh3;
    REQUIRE(ApplyModelPayload(**full, 0, fresh3, static_cast<uint32_t>(d), nullptr, &stale).ok());
    CHECK(stale == std::vector<float>(nd, 0.0f));
  }
  // Training continues at the new dimension; an update of the old one is refused.
  REQUIRE(engine.OpenRound(2, ids).ok());
  auto old_up = EncodeUplink(RandomVector(d, 30), UplinkConfig{.dense = true}, {});
  REQUIRE(old_up.ok());
  CHECK(!engine.Ingest(2, 1, 3, *old_up, 1.0).ok());
  auto new_up = EncodeUplink(RandomVector(nd, 31), UplinkConfig{.dense = true}, {});
  REQUIRE(new_up.ok());
  CHECK(engine.Ingest(2, 2, 3, *new_up, 1.0).ok());
  CHECK(engine.ApplyShapeChange(kChange).status().error().message().find("is open") != std::string::npos);
}

TEST_CASE("per-device widths: each coordinate is averaged over the clients whose nested sub-network holds it") {
  const std::vector<uint32_t> sizes{6, 5, 4, 3};
  const size_t d = MlpParamCount(sizes);
  EngineConfig cfg;
  cfg.pipeline = Pipeline::kDense;
  cfg.averaging = Averaging::kSupport;
  RoundEngine engine(RandomVector(d, 40), cfg);
  const std::vector<float> before(engine.global_model().begin(), engine.global_model().end());
  // Client 1 trains the whole model, 2 the first 3 and 2 units (width 0.5), 3 the first unit of each (0.2).
  const double widths[] = {1.0, 0.5, 0.2};
  const double weights[] = {1.0, 2.0, 3.0};
  const MlpShapeChange half = NestedSubnetwork(sizes, 0.5);
  CHECK(half.kept[0] == std::vector<uint32_t>{0, 1, 2});
  CHECK(half.kept[1] == std::vector<uint32_t>{0, 1});
  const uint64_t ids[] = {1, 2, 3};
  REQUIRE(engine.OpenRound(1, ids).ok());
  std::vector<std::vector<uint32_t>> maps;
  std::vector<std::vector<float>> updates;
  for (size_t k = 0; k < 3; ++k) {
    std::vector<uint32_t> map = ShapeChangeParamMap(NestedSubnetwork(sizes, widths[k]));
    std::vector<float> u = RandomVector(map.size(), 50 + k);
    auto bytes = EncodeUplink(u, UplinkConfig{.dense = true}, {});
    REQUIRE(bytes.ok());
    // The sub-network's update is what goes on the radio: its own dimension, not the model's.
    auto decoded = DecodeUplink(*bytes, static_cast<uint32_t>(map.size()));
    REQUIRE(decoded.ok());
    REQUIRE(engine.Ingest(1, ids[k], 1, *bytes, weights[k], nullptr,
                          k == 0 ? std::span<const uint32_t>{} : std::span<const uint32_t>(map)).ok());
    maps.push_back(std::move(map));
    updates.push_back(std::move(u));
  }
  REQUIRE(engine.CloseRound(1).ok());
  // Plain reference: for every coordinate, the weighted mean over the clients whose map holds it.
  for (size_t j = 0; j < d; ++j) {
    double sum = 0, w = 0;
    for (size_t k = 0; k < 3; ++k) {
      for (size_t i = 0; i < maps[k].size(); ++i) {
        if (maps[k][i] == j) {
          sum += weights[k] * updates[k][i];
          w += weights[k];
        }
      }
    }
    CHECK(engine.global_model()[j] - before[j] == doctest::Approx(sum / w).epsilon(1e-5));
  }
  // A sub-network's update sent without its map has the wrong dimension.
  REQUIRE(engine.OpenRound(2, ids).ok());
  auto narrow = EncodeUplink(updates[1], UplinkConfig{.dense = true}, {});
  REQUIRE(narrow.ok());
  RejectReason why{};
  CHECK(!engine.Ingest(2, 2, 2, *narrow, 1.0, &why).ok());
  CHECK(why == RejectReason::kWrongDimension);
}

TEST_CASE("rolling widths (FedRolex): the window wraps, moves a unit a round, and each coordinate is averaged over the clients whose window held it") {
  const std::vector<uint32_t> sizes{6, 5, 4, 3};
  const size_t d = MlpParamCount(sizes);
  // Offset 0 is HeteroFL's first units; offset 4 wraps: units 4, 0, 1 of 5 and 0, 1 of 4 (4 mod 4 = 0).
  CHECK(NestedSubnetwork(sizes, 0.5, 0).kept == NestedSubnetwork(sizes, 0.5).kept);
  const MlpShapeChange wrapped = NestedSubnetwork(sizes, 0.5, 4);
  CHECK(wrapped.kept[0] == std::vector<uint32_t>{0, 1, 4});
  CHECK(wrapped.kept[1] == std::vector<uint32_t>{0, 1});
  CHECK(NestedSubnetwork(sizes, 0.5, 6).kept[1] == std::vector<uint32_t>{2, 3});
  // Over n rounds of windows, every hidden unit of a layer of n units is trained.
  std::vector<int> covered(5, 0);
  for (uint32_t r = 0; r < 5; ++r) {
    const MlpShapeChange window = NestedSubnetwork(sizes, 0.2, r);
    for (uint32_t u : window.kept[0]) ++covered[u];
  }
  CHECK(covered == std::vector<int>{1, 1, 1, 1, 1});

  // The round level: SetRound moves the windows; without rolling it does nothing.
  Mlp mlp(std::vector<size_t>(sizes.begin(), sizes.end()));
  const std::vector<std::pair<std::string, double>> widths{{"phone-low", 0.5}};
  auto fixed = LeanRound::Create(mlp, PruneConfig{}, widths, Pipeline::kFrugal);
  auto rolling = LeanRound::Create(mlp, PruneConfig{}, widths, Pipeline::kFrugal, true);
  REQUIRE(fixed.ok());
  REQUIRE(rolling.ok());
  fixed->SetRound(4);
  rolling->SetRound(4);
  CHECK(fixed->NestedFor("phone-low")->map == ShapeChangeParamMap(NestedSubnetwork(sizes, 0.5)));
  CHECK(rolling->NestedFor("phone-low")->map == ShapeChangeParamMap(wrapped));
  CHECK(rolling->NestedFor("laptop") == nullptr);

  // Aggregation against a plain reference: two narrow clients on different rounds' windows and a whole one.
  EngineConfig cfg;
  cfg.pipeline = Pipeline::kDense;
  cfg.averaging = Averaging::kSupport;
  RoundEngine engine(RandomVector(d, 60), cfg);
  const std::vector<float> before(engine.global_model().begin(), engine.global_model().end());
  const uint64_t ids[] = {1, 2, 3};
  const double weights[] = {1.5, 2.0, 3.0};
  REQUIRE(engine.OpenRound(1, ids).ok());
  std::vector<std::vector<uint32_t>> maps{{}, ShapeChangeParamMap(NestedSubnetwork(sizes, 0.5, 3)),
                                          ShapeChangeParamMap(NestedSubnetwork(sizes, 0.5, 4))};
  std::vector<std::vector<float>> updates;
  for (size_t k = 0; k < 3; ++k) {
    const size_t n = k == 0 ? d : maps[k].size();
    updates.push_back(RandomVector(n, 70 + k));
    auto bytes = EncodeUplink(updates[k], UplinkConfig{.dense = true}, {});
    REQUIRE(bytes.ok());
    REQUIRE(engine.Ingest(1, ids[k], 1, *bytes, weights[k], nullptr, maps[k]).ok());
  }
  REQUIRE(engine.CloseRound(1).ok());
  for (size_t j = 0; j < d; ++j) {
    double sum = weights[0] * updates[0][j], w = weights[0];
    for (size_t k = 1; k < 3; ++k) {
      for (size_t i = 0; i < maps[k].size(); ++i) {
        if (maps[k][i] == j) {
          sum += weights[k] * updates[k][i];
          w += weights[k];
        }
      }
    }
    CHECK(engine.global_model()[j] - before[j] == doctest::Approx(sum / w).epsilon(1e-5));
  }
}

TEST_CASE("a corrupted shape change is rejected with the field named, and the client's model is untouched") {
  const std::vector<uint8_t> good = EncodeShapeChange(kChange);
  CHECK(good.size() == 6 + 4 * 4 + 2 + 1);
  auto back = DecodeShapeChange(good);
  REQUIRE(back.ok());
  CHECK(back->old_sizes == kChange.old_sizes);
  CHECK(back->kept == kChange.kept);
  auto message = [](std::vector<uint8_t> b) {
    auto r = DecodeShapeChange(b);
    return r.ok() ? std::string("accepted") : r.error().message();
  };
  std::vector<uint8_t> b = good;
  b[0] = 'X';
  CHECK(message(b).find("magic") != std::string::npos);
  b = good;
  b[5] = 2;
  CHECK(message(b).find("layer count") != std::string::npos);
  b = good;
  b[6 + 4] = 0;  b[6 + 5] = 0;  // hidden layer 0 of size 0
  CHECK(message(b).find("layer size 1") != std::string::npos);
  b = good;
  b[6 + 16 + 1] |= 0x80;  // unit 15 of a 9-unit layer
  CHECK(message(b).find("past its 9 units") != std::string::npos);
  b = good;
  b[6 + 16 + 2] = 0;  // hidden layer 1 keeps nothing
  CHECK(message(b).find("hidden layer 1's mask keeps no unit") != std::string::npos);
  b = good;
  b.pop_back();
  CHECK(message(b).find("truncated in hidden layer 1's mask") != std::string::npos);
  b = good;
  b.push_back(0);
  CHECK(message(b).find("trailing") != std::string::npos);

  // Through a chain: the client's copy stays as it was.
  const size_t d = MlpParamCount(kChange.old_sizes);
  b = good;
  b[6 + 16] = 0;
  b[6 + 16 + 1] = 0;
  const std::span<const uint8_t> piece(b);
  const ModelPayloadHeader h{ModelPayloadKind::kChain, 4, 5, static_cast<uint32_t>(MlpParamCount(kChange.NewSizes())),
                             1};
  const std::vector<uint8_t> payload = EncodeModelPayload(h, std::span(&piece, 1));
  std::vector<float> model = RandomVector(d, 2);
  const std::vector<float> copy = model;
  auto r = ApplyModelPayload(payload, 4, model, static_cast<uint32_t>(d), nullptr);
  REQUIRE(!r.ok());
  CHECK(r.error().message().find("model payload piece 0: shape change: hidden layer 0's mask keeps no unit") !=
        std::string::npos);
  CHECK(model == copy);
}

TEST_CASE("a pruned engine restored from its state with the shape serves the same payloads and rounds") {
  EngineConfig cfg;
  cfg.pipeline = Pipeline::kFrugal;
  cfg.server_opt.momentum = 0.9f;
  const size_t d = MlpParamCount(kChange.old_sizes);
  RoundEngine a(RandomVector(d, 3), cfg);
  std::map<uint32_t, std::vector<uint8_t>> steps;
  const uint64_t ids[] = {1, 2};
  auto run_round = [&](RoundEngine& e, uint32_t round) {
    REQUIRE(e.OpenRound(round, ids).ok());
    for (uint64_t id : ids) {
      auto up = EncodeUplink(RandomVector(e.dim(), 40 + 10 * round + id), UplinkConfig{.dense = true}, {});
      REQUIRE(up.ok());
      REQUIRE(e.Ingest(round, id, e.version(), *up, 1.0).ok());
    }
    REQUIRE(e.CloseRound(round).ok());
    const auto step = e.StepPayload(e.version());
    steps[e.version()].assign(step.begin(), step.end());
  };
  run_round(a, 1);
  REQUIRE(a.ApplyShapeChange(kChange).ok());
  const auto shape_step = a.StepPayload(a.version());
  steps[a.version()].assign(shape_step.begin(), shape_step.end());
  EngineState state;
  state.version = a.version();
  state.model.assign(a.global_model().begin(), a.global_model().end());
  state.server_state = a.ServerState();
  state.steps = steps;
  state.shape = a.shape();
  auto b = RoundEngine::Restore(state, cfg);
  REQUIRE(b.ok());
  CHECK((*b)->shape().old_sizes == kChange.old_sizes);
  CHECK((*b)->shape().kept == kChange.kept);
  // A client holding nothing gets the shape with the full model; one holding the unpruned version 1, the chain
  // through the shape change: the same bytes as from the engine that pruned.
  for (uint32_t held : {0u, 1u, 2u}) {
    CAPTURE(held);
    auto pa = a.ModelPayloadFor(held), pb = (*b)->ModelPayloadFor(held);
    REQUIRE(pa.ok());
    REQUIRE(pb.ok());
    CHECK(**pa == **pb);
  }
  run_round(a, 2);
  run_round(**b, 2);
  CHECK(std::memcmp(a.global_model().data(), (*b)->global_model().data(), 4 * a.dim()) == 0);
  // Restored without its shape, a fresh client's full model would not tell it the pruned sizes.
  EngineState shapeless = state;
  shapeless.shape = MlpShapeChange{};
  auto c = RoundEngine::Restore(shapeless, cfg);
  REQUIRE(c.ok());
  auto pa = a.ModelPayloadFor(0);
  auto pc = (*c)->ModelPayloadFor(0);
  REQUIRE(pa.ok());
  REQUIRE(pc.ok());
  CHECK(**pa != **pc);
  // A shape that does not fit the stored model is refused, naming both sizes.
  EngineState wrong = state;
  wrong.model.pop_back();
  auto bad = RoundEngine::Restore(wrong, cfg);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code() == ErrorCode::kDataLoss);
  CHECK(bad.error().message().find("shape") != std::string::npos);
}

TEST_CASE("a pruned CNN computes what the unpruned one does with the pruned channels and units zeroed") {
  const Cnn full = MakeCnn(kCnnChange.old_sizes);
  const Cnn pruned = MakeCnn(kCnnChange.NewSizes());
  REQUIRE(CheckShapeChange(kCnnChange).ok());
  CHECK(kCnnChange.OldParamCount() == full.num_params());
  CHECK(kCnnChange.NewParamCount() == pruned.num_params());
  CHECK(PrunableSizes(full) == kCnnChange.old_sizes);
  CHECK(CnnGeometryOf(full) == kGeometry);
  const std::vector<uint32_t> map = ShapeChangeParamMap(kCnnChange);
  REQUIRE(map.size() == pruned.num_params());
  CHECK(map == ReferenceCnnMap(kCnnChange));
  std::vector<float> params = RandomVector(full.num_params(), 13);
  const std::vector<float> small = ApplyParamMap(map, params);
  // Zero every parameter that is not kept: a pruned filter, its bias and the
  // next layer's weights that read its channel; a pruned dense unit's in and out weights.
  std::vector<bool> kept(params.size(), false);
  for (uint32_t i : map) kept[i] = true;
  for (size_t i = 0; i < params.size(); ++i) if (!kept[i]) params[i] = 0.0f;

  const test::Batch batch = test::RandomBatch(40, 8 * 8 * 2, 3, 17);  // more than one internal chunk of 32
  auto ws_full = full.MakeWorkspace();
  auto ws_small = pruned.MakeWorkspace();
  std::vector<float> g_full(full.num_params()), g_small(pruned.num_params());
  const double loss_full = full.LossAndGradient(params, batch.view(), g_full, *ws_full);
  const double loss_small = pruned.LossAndGradient(small, batch.view(), g_small, *ws_small);
  CHECK(loss_small == doctest::Approx(loss_full).epsilon(1e-6));
  for (size_t i = 0; i < map.size(); ++i) CHECK(g_small[i] == doctest::Approx(g_full[map[i]]).epsilon(1e-5));
  std::vector<int32_t> p_full(40), p_small(40);
  full.Predict(params, batch.view(), p_full, *ws_full);
  pruned.Predict(small, batch.view(), p_small, *ws_small);
  CHECK(p_full == p_small);
}

TEST_CASE("a pruned CNN's FLOPs are its convolutions' and GEMMs' multiply-adds, and its schedule halves them") {
  const std::vector<uint32_t> s = kCnnChange.NewSizes();
  CHECK(s == std::vector<uint32_t>{2, 3, 3, 4, 3});
  const Cnn pruned = MakeCnn(s);
  // The kernels' work for one example: conv1 is a (c1 x 9 c0) by (9 c0 x 64 pixels) GEMM over im2col, conv2 a
  // (c2 x 9 c1) by (9 c1 x 16 pixels) one after pooling, dense (d x 4 c2) and output (classes x d). Forward:
  // 2 per multiply-add plus the bias adds; backward: every weight gradient, every input gradient but conv1's,
  // and the bias gradients.
  const double conv1 = 64.0 * s[1] * 9 * s[0], conv2 = 16.0 * s[2] * 9 * s[1], dense = 1.0 * s[3] * 4 * s[2],
               out = 1.0 * s[4] * s[3], bias = 64.0 * s[1] + 16.0 * s[2] + s[3] + s[4];
  const double fwd = 2 * (conv1 + conv2 + dense + out) + bias;
  const double bwd = 2 * (conv1 + conv2 + dense + out) + 2 * (conv2 + dense + out) + bias;
  CHECK(pruned.flops_per_example().forward == fwd);
  CHECK(pruned.flops_per_example().backward == bwd);
  CHECK(ShapeTrainFlops(s, kGeometry) == fwd + bwd);
  CHECK(ShapeParamCount(s, kGeometry) == pruned.num_params());

  // The McMahan CNN (32 and 64 channels, 512 units): one factor scales all three, to at most half the FLOPs.
  const std::vector<uint32_t> cnn{1, 32, 64, 512, 10};
  const CnnGeometry mnist{28, 28, 5};
  const std::vector<uint32_t> w = WidthsForFlopsFraction(cnn, 0.5, mnist);
  REQUIRE(w.size() == 3);
  const double all = ShapeTrainFlops(cnn, mnist);
  CHECK(ShapeTrainFlops(std::vector<uint32_t>{1, w[0], w[1], w[2], 10}, mnist) <= 0.5 * all);
  CHECK(ShapeTrainFlops(std::vector<uint32_t>{1, w[0] + 1, w[1] + 1, w[2] + 1, 10}, mnist) > 0.5 * all);
  CHECK(w[0] < 32);
  CHECK(w[1] < 64);
  const PruneConfig cfg{.target_flops_fraction = 0.5, .start_round = 4, .steps = 2, .every = 2};
  CHECK(!PruneStepWidths(cfg, 5, cnn, mnist));
  CHECK(*PruneStepWidths(cfg, 4, cnn, mnist) == WidthsForFlopsFraction(cnn, 0.75, mnist));
  CHECK(*PruneStepWidths(cfg, 6, cnn, mnist) == w);
}

TEST_CASE("the CNN's kept channels are the ones with the largest filter-and-fan-out norms") {
  const std::vector<uint32_t> s = kCnnChange.old_sizes;  // 2, 4, 5, 6, 3
  std::vector<float> p(ShapeParamCount(s, kGeometry), 0.0f);
  // Offsets by the layout of model.h: conv1 (4 x 18), its bias, conv2 (5 x 36), its bias, dense (6 x 20), ...
  const size_t c2w = 4 * 18 + 4, d1w = c2w + 5 * 36 + 5, d1b = d1w + 6 * 20, d2w = d1b + 6;
  p[1 + 4 * 7] = 3;           // conv1 channel 1, patch element 7
  p[c2w + 0 + 5 * (8 * 4 + 1)] = 4;  // conv2 channel 0 reads conv1 channel 1 at kernel position 8
  p[c2w + 2 + 5 * 3] = 1;     // conv2 channel 2's own filter
  p[d1w + (3 * 5 + 2) + 20 * 4] = 2;  // dense unit 4 reads conv2 channel 2 at pooled pixel 3
  p[d2w + 4 + 6 * 1] = 0.5f;  // output class 1 from dense unit 4
  const auto scores = CnnUnitScores(kGeometry, s, p);
  REQUIRE(scores.size() == 3);
  CHECK(scores[0][1] == doctest::Approx(5.0));  // its filter and conv2's input slice: sqrt(9 + 16)
  CHECK(scores[0][0] == 0.0);
  CHECK(scores[1][0] == doctest::Approx(4.0));
  CHECK(scores[1][2] == doctest::Approx(std::sqrt(5.0)));  // its filter and the dense weight reading it
  CHECK(scores[2][4] == doctest::Approx(std::sqrt(4.25)));  // in and out weights
  const MlpShapeChange c = ChooseKeptCnnUnits(kGeometry, s, p, std::vector<uint32_t>{1, 2, 1});
  CHECK(c.cnn == kGeometry);
  CHECK(c.kept[0] == std::vector<uint32_t>{1});
  CHECK(c.kept[1] == std::vector<uint32_t>{0, 2});
  CHECK(c.kept[2] == std::vector<uint32_t>{4});
}

TEST_CASE("a CNN shape change carries the engine's model and state, a client's chain and a restore, exactly") {
  EngineConfig cfg;
  cfg.pipeline = Pipeline::kFrugal;
  cfg.server_opt.momentum = 0.9f;
  cfg.release_ema = 0.5;
  const size_t d = kCnnChange.OldParamCount();
  RoundEngine engine(RandomVector(d, 8), cfg);
  std::vector<float> client(engine.global_model().begin(), engine.global_model().end());
  const uint64_t ids[] = {1, 2};
  REQUIRE(engine.OpenRound(1, ids).ok());
  std::vector<float> residual = RandomVector(d, 12);
  for (uint64_t id : ids) {
    auto up = EncodeUplink(RandomVector(d, 60 + id), UplinkConfig{.dense = false, .density = 0.3}, residual);
    REQUIRE(up.ok());
    REQUIRE(engine.Ingest(1, id, 1, *up, 1.0).ok());
  }
  REQUIRE(engine.CloseRound(1).ok());
  const std::vector<float> before(engine.global_model().begin(), engine.global_model().end());
  const std::vector<float> release_before(engine.release_model().begin(), engine.release_model().end());
  const std::vector<uint8_t> state_before = engine.ServerState();
  REQUIRE(engine.ApplyShapeChange(kCnnChange).ok());
  const std::vector<uint32_t> ref = ReferenceCnnMap(kCnnChange);
  const size_t nd = ref.size();
  CHECK(engine.shape().cnn == kGeometry);
  CheckModelsFollow(engine, before, release_before, ref);
  // Server state: residual, momentum and release average, d floats each, each following the map.
  const std::vector<float> old_state = StateFloats(state_before), new_state = StateFloats(engine.ServerState());
  REQUIRE(old_state.size() == 3 * d);
  REQUIRE(new_state.size() == 3 * nd);
  for (size_t block = 0; block < 3; ++block) {
    for (size_t i = 0; i < nd; ++i) CHECK(new_state[block * nd + i] == old_state[block * d + ref[i]]);
  }
  // A client holding version 1 gets round 1's step and the CNN's shape change; its residual follows.
  auto chain = engine.ModelPayloadFor(1);
  REQUIRE(chain.ok());
  std::vector<uint32_t> sizes;
  std::vector<float> follower = residual;
  REQUIRE(ApplyModelPayload(**chain, 1, client, static_cast<uint32_t>(d), &sizes, &follower).ok());
  CHECK(sizes == kCnnChange.NewSizes());
  CHECK(client == std::vector<float>(engine.global_model().begin(), engine.global_model().end()));
  REQUIRE(follower.size() == nd);
  for (size_t i = 0; i < nd; ++i) CHECK(follower[i] == residual[ref[i]]);
  // Restored from its state with the shape (what the store keeps), it serves the same bytes.
  EngineState state;
  state.version = engine.version();
  state.model.assign(engine.global_model().begin(), engine.global_model().end());
  state.server_state = engine.ServerState();
  for (uint32_t v = 2; v <= engine.version(); ++v) {
    const auto step = engine.StepPayload(v);
    state.steps[v].assign(step.begin(), step.end());
  }
  auto stored = DecodeShapeChange(EncodeShapeChange(engine.shape()));
  REQUIRE(stored.ok());
  state.shape = *stored;
  auto restored = RoundEngine::Restore(state, cfg);
  REQUIRE(restored.ok());
  for (uint32_t held : {0u, 1u, 2u}) {
    CAPTURE(held);
    auto pa = engine.ModelPayloadFor(held), pb = (*restored)->ModelPayloadFor(held);
    REQUIRE(pa.ok());
    REQUIRE(pb.ok());
    CHECK(**pa == **pb);
  }
  // The same sizes as an MLP's (no geometry) do not continue from the CNN's shape.
  MlpShapeChange as_mlp{kCnnChange.NewSizes(), {{0}, {0}, {0}}};
  CHECK(engine.ApplyShapeChange(as_mlp).status().error().message().find("parameters") != std::string::npos);
}

TEST_CASE("a CNN shape change round-trips its wire form; a corrupt or mismatched one is refused, naming the field") {
  const std::vector<uint8_t> good = EncodeShapeChange(kCnnChange);
  CHECK(good.size() == 6 + 12 + 4 * 5 + 3);
  CHECK(good[4] == 2);
  auto back = DecodeShapeChange(good);
  REQUIRE(back.ok());
  CHECK(back->old_sizes == kCnnChange.old_sizes);
  CHECK(back->kept == kCnnChange.kept);
  CHECK(back->cnn == kGeometry);
  CHECK_FALSE(DecodeShapeChange(EncodeShapeChange(kChange))->cnn.has_value());
  auto message = [](std::vector<uint8_t> b) {
    auto r = DecodeShapeChange(b);
    return r.ok() ? std::string("accepted") : r.error().message();
  };
  std::vector<uint8_t> b = good;
  b[14] = 4;  // an even kernel
  CHECK(message(b).find("CNN kernel 4") != std::string::npos);
  b = good;
  b[6] = 2;  // a 2-pixel-high image
  CHECK(message(b).find("CNN image 2x8") != std::string::npos);
  b = good;
  b[5] = 4;
  CHECK(message(b).find("a CNN has 5") != std::string::npos);
  b = good;
  b.resize(12);
  CHECK(message(b).find("truncated in its CNN geometry") != std::string::npos);
  b = good;
  b[6 + 12 + 20] |= 0x10;  // conv1 channel 4 of 4
  CHECK(message(b).find("past its 4 units") != std::string::npos);
  b = good;
  b[6 + 12 + 22] = 0;  // the dense layer keeps nothing
  CHECK(message(b).find("hidden layer 2's mask keeps no unit") != std::string::npos);
  b = good;
  b.push_back(0);
  CHECK(message(b).find("trailing") != std::string::npos);
  b = good;
  b[4] = 3;
  CHECK(message(b).find("unsupported format 3") != std::string::npos);

  // As a chain piece for a client whose model is not that CNN: refused, the model untouched.
  const size_t d = kCnnChange.OldParamCount() + 1;
  const std::span<const uint8_t> piece(good);
  const ModelPayloadHeader h{ModelPayloadKind::kChain, 4, 5, static_cast<uint32_t>(kCnnChange.NewParamCount()), 1};
  const std::vector<uint8_t> payload = EncodeModelPayload(h, std::span(&piece, 1));
  std::vector<float> model = RandomVector(d, 2);
  const std::vector<float> copy = model;
  auto r = ApplyModelPayload(payload, 4, model, static_cast<uint32_t>(d), nullptr);
  REQUIRE(!r.ok());
  CHECK(r.error().message().find("shape change is from a model of " + std::to_string(d - 1) + " parameters") !=
        std::string::npos);
  CHECK(model == copy);
  // A shape with sizes that are no CNN's is refused by the check and by the model factory.
  MlpShapeChange four = kCnnChange;
  four.old_sizes.pop_back();
  four.kept.pop_back();
  CHECK(CheckShapeChange(four).error().message().find("a CNN has 5 layer sizes") != std::string::npos);
  CHECK(!MakePrunedModel(std::vector<uint32_t>{2, 3, 3, 4}, kGeometry, "cnn").ok());
}

TEST_CASE("[prune] on the CNN: the round level prunes channels on schedule, resumes its shape, and refuses [widths]") {
  const Cnn cnn = MakeCnn(kCnnChange.old_sizes);
  const PruneConfig prune{.target_flops_fraction = 0.5, .start_round = 1, .steps = 1, .every = 1};
  const std::pair<std::string, double> narrow[] = {{"phone-low", 0.5}};
  auto refused = LeanRound::Create(cnn, {}, narrow, Pipeline::kFrugal);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message().find("[widths] (nested sub-networks) is built for MLPs only") != std::string::npos);
  CHECK(!LeanRound::Create(cnn, prune, {}, Pipeline::kSecure).ok());
  auto lean = LeanRound::Create(cnn, prune, {}, Pipeline::kFrugal);
  REQUIRE(lean.ok());
  CHECK(lean->cnn() == kGeometry);
  EngineConfig cfg;
  cfg.pipeline = Pipeline::kFrugal;
  std::vector<float> init(cnn.num_params());
  cnn.InitParams(init, 3);
  RoundEngine engine(init, cfg);
  auto none = lean->PruneAfter(0, engine);
  REQUIRE(none.ok());
  CHECK(!none->has_value());
  auto step = lean->PruneAfter(1, engine);
  REQUIRE(step.ok());
  REQUIRE(step->has_value());
  const PruneStep& ps = **step;
  CHECK(ps.change.cnn == kGeometry);
  CHECK(ps.change.kept == ChooseKeptCnnUnits(kGeometry, kCnnChange.old_sizes, init,
                                             WidthsForFlopsFraction(kCnnChange.old_sizes, 0.5, kGeometry)).kept);
  const std::unique_ptr<Model> model = lean->MakeModel("cnn");
  REQUIRE(dynamic_cast<const Cnn*>(model.get()) != nullptr);
  CHECK(model->num_params() == engine.dim());
  const FlopCount f = model->flops_per_example();
  CHECK((f.forward + f.backward) / lean->UnprunedTrainFlops() <= 0.5);
  CHECK(lean->ShapeDescription().find("CNN with ") == 0);
  // Resuming: the engine's shape is accepted; the same sizes with another geometry are not.
  auto resumed = LeanRound::Create(cnn, prune, {}, Pipeline::kFrugal);
  REQUIRE(resumed.ok());
  MlpShapeChange other = engine.shape();
  other.cnn->kernel = 5;
  CHECK(resumed->Resume(other).error().message().find("not of this run's unpruned model") != std::string::npos);
  REQUIRE(resumed->Resume(engine.shape()).ok());
  CHECK(resumed->sizes() == lean->sizes());
}
}

}  // namespace frugal
