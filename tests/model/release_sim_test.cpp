// eval.int8 and [distill] through a front end: a small frugal-sim run on real
// Fashion-MNIST reports the int8 accuracy beside fp32 every round and, at the
// end, a distilled student with its files, sizes and accuracies.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "frugal/sim/config.h"
#include "frugal/sim/runner.h"

namespace frugal::sim {
namespace {

constexpr const char* kSmall = R"(
name = "frugal-models-small"
seed = 5
rounds = 3
pipeline = "dense"
model = "logreg"
[data]
partition = "dirichlet"
alpha = 0.5
[eval]
examples = 500
[population]
clients = 20
availability = { always = 1.0 }
[round]
clients_per_round = 5
[train]
epochs = 1
batch_size = 32
learning_rate = 0.1
)";

Result<RunResult> Run(const std::vector<std::string>& sets, const std::string& out_dir = "") {
  auto c = ParseSimConfig(kSmall, "frugal-models-small.toml", sets);
  if (!c.ok()) return c.error();
  RunOptions opts;
  opts.out_dir = out_dir;
  return RunSimulation(*c, opts);
}

TEST_SUITE("model") {
  TEST_CASE("frugal-sim with eval.int8 and distill.at_end reports int8 accuracy and a distilled student") {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("frugal-models-sim-" + std::to_string(getpid()));
    auto r = Run({"eval.int8=true", "distill.at_end=true", "distill.student=\"logreg\"", "distill.pool_examples=2000",
                  "distill.epochs=5"},
                 dir.string());
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    REQUIRE(r->rounds.size() == 3);
    for (const RoundRecord& rec : r->rounds) {
      CHECK(rec.accuracy_int8 >= 0);
      CHECK(std::fabs(rec.accuracy_int8 - rec.accuracy) <= 0.03);
    }
    const auto& m = r->summary.extra_metrics;
    REQUIRE(m.count("final_accuracy_int8") == 1);
    CHECK(m.at("final_accuracy_int8") == r->rounds.back().accuracy_int8);
    REQUIRE(m.count("student_accuracy") == 1);
    CHECK(m.at("teacher_accuracy") == r->summary.final_accuracy);
    INFO("teacher ", m.at("teacher_accuracy"), " student ", m.at("student_accuracy"));
    CHECK(m.at("teacher_accuracy") > 0.45);  // trained: chance is 0.1
    CHECK(m.at("student_accuracy") > m.at("teacher_accuracy") - 0.05);
    CHECK(m.at("student_flops_ratio") == 1.0);  // logreg into logreg
    CHECK(m.at("distill_pool_examples") == 2000);
    CHECK(std::filesystem::file_size(dir / "student.int8") == m.at("student_int8_bytes"));
    CHECK(std::filesystem::file_size(dir / "student.f32") > m.at("student_fp32_bytes"));  // plus its header
    std::filesystem::remove_all(dir);

    auto plain = Run({});
    REQUIRE(plain.ok());
    for (const RoundRecord& rec : plain->rounds) CHECK(rec.accuracy_int8 == -1);
    CHECK(plain->summary.extra_metrics.count("student_accuracy") == 0);
    CHECK(plain->summary.extra_metrics.count("final_accuracy_int8") == 0);
  }

  TEST_CASE("A bad [distill] key is refused, naming it") {
    auto r = Run({"distill.at_end=true", "distill.student=\"mlp:x\""});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message().find("distill.student") != std::string::npos);
  }
}

}  // namespace
}  // namespace frugal::sim
