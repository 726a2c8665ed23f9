#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/data/dataset.h"
#include "frugal/model/distill.h"
#include "frugal/model/release_models.h"
#include "frugal/model/model.h"
#include "frugal/train/trainer.h"

namespace frugal {
namespace {

TEST_SUITE("model") {
  TEST_CASE("Student specs: logreg and mlp:H[-H2], bad ones named") {
    auto lr = MakeStudent("logreg", 784, 10);
    REQUIRE(lr.ok());
    CHECK((*lr)->layer_sizes() == std::vector<size_t>{784, 10});
    auto two = MakeStudent("mlp:48-16", 784, 10);
    REQUIRE(two.ok());
    CHECK((*two)->layer_sizes() == std::vector<size_t>{784, 48, 16, 10});
    for (const char* bad : {"mlp:", "mlp:0", "mlp:12x", "mlp:4--3", "cnn", "mlp:-5"}) {
      auto r = MakeStudent(bad, 784, 10);
      INFO(bad);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().message().find("distill.student") != std::string::npos);
    }
  }

  TEST_CASE("The soft-target gradient matches finite differences of the soft-target loss") {
    auto student = MakeStudent("mlp:6", 5, 4);
    REQUIRE(student.ok());
    const Mlp& s = **student;
    std::vector<float> params(s.num_params());
    s.InitParams(params, 3);
    Rng rng(4);
    const size_t n = 3;
    std::vector<float> x(n * 5), targets(n * 4);
    for (float& v : x) v = static_cast<float>(rng.Normal());
    for (size_t i = 0; i < n; ++i) {
      float sum = 0;
      for (size_t c = 0; c < 4; ++c) sum += (targets[i * 4 + c] = static_cast<float>(rng.Uniform() + 0.1));
      for (size_t c = 0; c < 4; ++c) targets[i * 4 + c] /= sum;
    }
    DistillWorkspace ws;
    std::vector<float> grad(params.size());
    const double t = 2.5;
    SoftTargetLoss(s, params, x.data(), n, targets.data(), t, grad, ws);
    for (size_t k = 0; k < params.size(); ++k) {
      const float keep = params[k];
      const float h = 1e-2f;
      params[k] = keep + h;
      const double up = SoftTargetLoss(s, params, x.data(), n, targets.data(), t, {}, ws);
      params[k] = keep - h;
      const double down = SoftTargetLoss(s, params, x.data(), n, targets.data(), t, {}, ws);
      params[k] = keep;
      const double fd = (up - down) / (2.0 * h);
      INFO("param ", k, " analytic ", grad[k], " finite difference ", fd);
      CHECK(grad[k] == doctest::Approx(fd).epsilon(0.02).scale(1e-3));
    }
    // A student that outputs the targets' own logits has zero loss.
    auto lr = MakeStudent("logreg", 5, 4);
    std::vector<float> zero((*lr)->num_params(), 0.0f);
    std::vector<float> uniform(n * 4, 0.25f);
    CHECK(SoftTargetLoss(**lr, zero, x.data(), n, uniform.data(), t, {}, ws) == doctest::Approx(0.0).scale(1e-9));
  }

  TEST_CASE("Distilling a Fashion-MNIST 2NN into mlp:32 on an unlabeled pool nears the teacher; labels are never read") {
    static const Result<Dataset> train = LoadFashionMnist(Split::kTrain);
    static const Result<Dataset> test = LoadFashionMnist(Split::kTest);
    REQUIRE(train.ok());
    REQUIRE(test.ok());
    auto teacher = MakeModel("mlp");
    REQUIRE(teacher.ok());
    const Model& tm = **teacher;
    std::vector<float> tp(tm.num_params());
    tm.InitParams(tp, 1);
    auto ws = tm.MakeWorkspace();
    std::vector<uint32_t> rows(6000);
    std::iota(rows.begin(), rows.end(), 0u);
    REQUIRE(Train(tm, tp, *train, rows, TrainConfig{.epochs = 3, .batch_size = 32, .learning_rate = 0.05f, .seed = 1}, *ws).ok());
    std::vector<uint32_t> test_rows(2000);
    std::iota(test_rows.begin(), test_rows.end(), 0u);
    auto teacher_eval = Evaluate(tm, tp, *test, test_rows, *ws);
    REQUIRE(teacher_eval.ok());

    // The pool: other training images; a copy with every label scrambled
    // must give the bit-identical student.
    std::vector<uint32_t> pool(3000);
    std::iota(pool.begin(), pool.end(), 20000u);
    Dataset scrambled = *train;
    for (int32_t& l : scrambled.labels) l = 9 - l;
    auto student = MakeStudent("mlp:32", 784, 10);
    REQUIRE(student.ok());
    const DistillConfig cfg{.student = "mlp:32", .pool_examples = 3000, .epochs = 3, .seed = 5};
    std::vector<float> sp((*student)->num_params()), sp2;
    (*student)->InitParams(sp, 2);
    sp2 = sp;
    auto stats = Distill(tm, tp, **student, sp, *train, pool, cfg);
    REQUIRE_MESSAGE(stats.ok(), stats.status().ToString());
    auto stats2 = Distill(tm, tp, **student, sp2, scrambled, pool, cfg);
    REQUIRE(stats2.ok());
    CHECK(sp == sp2);
    CHECK(stats->last_epoch_loss < stats->first_epoch_loss);
    CHECK(stats->examples == 9000);
    const FlopCount sf = (*student)->flops_per_example();
    CHECK(stats->flops == tm.flops_per_example().forward * 3000 + (sf.forward + sf.backward) * 9000);
    auto sws = (*student)->MakeWorkspace();
    auto student_eval = Evaluate(**student, sp, *test, test_rows, *sws);
    REQUIRE(student_eval.ok());
    INFO("teacher ", teacher_eval->accuracy, " student ", student_eval->accuracy);
    CHECK(student_eval->accuracy > teacher_eval->accuracy - 0.04);
    CHECK(sf.forward < 0.25 * tm.flops_per_example().forward);
  }

  TEST_CASE("Distillation refuses a CNN teacher, bad settings and out-of-range pool rows") {
    Dataset d;
    d.num_features = 784;
    d.num_classes = 10;
    d.features.assign(784 * 2, 0.5f);
    d.labels = {0, 1};
    auto cnn = MakeModel("cnn");
    auto student = MakeStudent("logreg", 784, 10);
    REQUIRE(cnn.ok());
    REQUIRE(student.ok());
    std::vector<float> cp((*cnn)->num_params(), 0.0f), sp((*student)->num_params(), 0.0f);
    const std::vector<uint32_t> pool = {0, 1};
    auto r = Distill(**cnn, cp, **student, sp, d, pool, DistillConfig{});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message().find("dense teacher") != std::string::npos);
    auto mlp = MakeModel("mlp");
    std::vector<float> mp((*mlp)->num_params(), 0.0f);
    CHECK_FALSE(Distill(**mlp, mp, **student, sp, d, pool, DistillConfig{.temperature = 0}).ok());
    CHECK_FALSE(Distill(**mlp, mp, **student, sp, d, pool, DistillConfig{.epochs = 0}).ok());
    const std::vector<uint32_t> bad_pool = {0, 2};
    auto oob = Distill(**mlp, mp, **student, sp, d, bad_pool, DistillConfig{});
    REQUIRE_FALSE(oob.ok());
    CHECK(oob.error().message().find("out of range") != std::string::npos);
  }
}

}  // namespace
}  // namespace frugal

namespace frugal {
namespace {

TEST_SUITE("model") {
  TEST_CASE("The distillation pool is a seeded sample of distinct training rows; settings errors name the key") {
    const std::vector<uint32_t> a = DistillPoolRows(60000, 5000, 7), b = DistillPoolRows(60000, 5000, 7);
    const std::vector<uint32_t> c = DistillPoolRows(60000, 5000, 8);
    CHECK(a == b);
    CHECK(a != c);
    REQUIRE(a.size() == 5000);
    for (size_t i = 1; i < a.size(); ++i) CHECK(a[i - 1] < a[i]);
    CHECK(a.back() < 60000);
    CHECK(DistillPoolRows(10, 50, 1).size() == 10);
    DistillSettings s;
    s.at_end = true;
    CHECK(CheckDistillSettings(s).ok());
    s.config.student = "mlp:abc";
    CHECK(CheckDistillSettings(s).error().message().find("distill.student") != std::string::npos);
    s.config.student = "logreg";
    s.config.temperature = -1;
    CHECK(CheckDistillSettings(s).error().message().find("distill.temperature") != std::string::npos);
    s.config.temperature = 2;
    s.config.pool_examples = 0;
    CHECK(CheckDistillSettings(s).error().message().find("distill.pool_examples") != std::string::npos);
  }
}

}  // namespace
}  // namespace frugal
