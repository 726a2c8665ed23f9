#include "frugal/model/release_models.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "frugal/core/random.h"
#include "frugal/model/int8.h"
#include "frugal/train/trainer.h"

namespace frugal {
namespace {

// Seed streams of distillation, derived from the run's seed. Kept here, not
// in frugal/core/streams.h, until distillation leaves this module; 41 and 42
// are unused there.
constexpr uint64_t kDistillPoolStream = 41;
constexpr uint64_t kDistillTrainStream = 42;

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace

Status CheckDistillSettings(const DistillSettings& s) {
  const DistillConfig& c = s.config;
  if (auto m = MakeStudent(c.student, 784, 10); !m.ok()) return m.error();
  if (c.pool_examples == 0) return InvalidArgumentError("distill.pool_examples must be at least 1");
  if (c.epochs < 1 || c.epochs > 1000) return InvalidArgumentError("distill.epochs must be in [1, 1000]");
  if (c.batch_size < 1) return InvalidArgumentError("distill.batch_size must be at least 1");
  if (!(c.temperature > 0) || !std::isfinite(c.temperature)) return InvalidArgumentError("distill.temperature must be > 0");
  if (!(c.learning_rate > 0) || !std::isfinite(c.learning_rate)) return InvalidArgumentError("distill.learning_rate must be > 0");
  if (!(c.momentum >= 0 && c.momentum < 1)) return InvalidArgumentError("distill.momentum must be in [0, 1)");
  return OkStatus();
}

std::vector<uint32_t> DistillPoolRows(size_t train_size, uint32_t pool_examples, uint64_t run_seed) {
  const size_t k = std::min<size_t>(pool_examples, train_size);
  std::vector<uint32_t> all(train_size);
  std::iota(all.begin(), all.end(), 0u);
  Rng rng(DeriveSeed(run_seed, kDistillPoolStream));
  for (size_t i = 0; i < k; ++i) std::swap(all[i], all[i + rng.UniformInt(train_size - i)]);
  all.resize(k);
  std::sort(all.begin(), all.end());
  return all;
}

Result<StudentReport> DistillReleased(const Model& teacher, std::span<const float> teacher_params,
                                      const Dataset& train, const Dataset& test, std::span<const uint32_t> test_rows,
                                      const DistillConfig& cfg, uint64_t run_seed) {
  FRUGAL_ASSIGN_OR_RETURN(std::unique_ptr<Mlp> student, MakeStudent(cfg.student, teacher.input_dim(), teacher.num_classes()));
  const std::vector<uint32_t> pool = DistillPoolRows(train.size(), cfg.pool_examples, run_seed);
  StudentReport r;
  r.student = cfg.student;
  r.pool_examples = pool.size();
  r.temperature = cfg.temperature;
  r.student_weights.resize(student->num_params());
  student->InitParams(r.student_weights, DeriveSeed(run_seed, kDistillTrainStream));
  DistillConfig c = cfg;
  c.seed = DeriveSeed(DeriveSeed(run_seed, kDistillTrainStream), 1);
  FRUGAL_ASSIGN_OR_RETURN(r.stats, Distill(teacher, teacher_params, *student, r.student_weights, train, pool, c));

  auto tws = teacher.MakeWorkspace();
  auto sws = student->MakeWorkspace();
  FRUGAL_ASSIGN_OR_RETURN(EvalResult te, Evaluate(teacher, teacher_params, test, test_rows, *tws));
  FRUGAL_ASSIGN_OR_RETURN(EvalResult se, Evaluate(*student, r.student_weights, test, test_rows, *sws));
  Int8Workspace iws;
  FRUGAL_ASSIGN_OR_RETURN(Int8Mlp sq, Int8Mlp::Quantize(*student, r.student_weights));
  FRUGAL_ASSIGN_OR_RETURN(EvalResult sqe, EvaluateInt8(sq, test, test_rows, iws));
  if (auto tq = Int8Mlp::Quantize(teacher, teacher_params); tq.ok()) {
    FRUGAL_ASSIGN_OR_RETURN(EvalResult tqe, EvaluateInt8(*tq, test, test_rows, iws));
    r.teacher_int8_accuracy = tqe.accuracy;
    r.teacher_int8_bytes = tq->encoded_bytes();
  }
  r.teacher_params = teacher.num_params();
  r.student_params = student->num_params();
  r.teacher_fp32_bytes = teacher.num_params() * sizeof(float);
  r.student_fp32_bytes = student->num_params() * sizeof(float);
  r.student_int8 = EncodeInt8Model(sq);
  r.student_int8_bytes = r.student_int8.size();
  r.teacher_flops = teacher.flops_per_example().forward;
  r.student_flops = student->flops_per_example().forward;
  r.teacher_accuracy = te.accuracy;
  r.student_accuracy = se.accuracy;
  r.student_int8_accuracy = sqe.accuracy;
  return r;
}

Result<std::optional<EvalResult>> EvaluateReleasedInt8(const Model& model, std::span<const float> params,
                                                       const Dataset& data, std::span<const uint32_t> rows) {
  if (dynamic_cast<const Mlp*>(&model) == nullptr) return std::optional<EvalResult>();
  FRUGAL_ASSIGN_OR_RETURN(Int8Mlp q, Int8Mlp::Quantize(model, params));
  Int8Workspace ws;
  FRUGAL_ASSIGN_OR_RETURN(EvalResult r, EvaluateInt8(q, data, rows, ws));
  return std::optional<EvalResult>(r);
}

void AddStudentToSummary(const StudentReport& r, std::map<std::string, double>& m, std::vector<std::string>& notes) {
  m["teacher_accuracy"] = r.teacher_accuracy;
  if (r.teacher_int8_accuracy >= 0) m["teacher_int8_accuracy"] = r.teacher_int8_accuracy;
  if (r.teacher_int8_bytes > 0) m["teacher_int8_bytes"] = static_cast<double>(r.teacher_int8_bytes);
  m["teacher_fp32_bytes"] = static_cast<double>(r.teacher_fp32_bytes);
  m["teacher_flops_per_example"] = r.teacher_flops;
  m["student_accuracy"] = r.student_accuracy;
  m["student_int8_accuracy"] = r.student_int8_accuracy;
  m["student_fp32_bytes"] = static_cast<double>(r.student_fp32_bytes);
  m["student_int8_bytes"] = static_cast<double>(r.student_int8_bytes);
  m["student_flops_per_example"] = r.student_flops;
  m["student_flops_ratio"] = r.teacher_flops > 0 ? r.student_flops / r.teacher_flops : 0;
  m["distill_pool_examples"] = static_cast<double>(r.pool_examples);
  m["distill_flops"] = r.stats.flops;
  char line[512];
  std::snprintf(line, sizeof line,
                "Distilled student %s (student.f32, student.int8 beside summary.json): %.2f%% test accuracy fp32, "
                "%.2f%% int8, against the released model's %.2f%%; %.0f FLOPs per example (%.1f%% of the "
                "teacher's), %zu bytes fp32 / %zu int8. Trained on soft targets (temperature %g) over %zu training "
                "images whose labels were never read.",
                r.student.c_str(), 100 * r.student_accuracy, 100 * r.student_int8_accuracy, 100 * r.teacher_accuracy,
                r.student_flops, r.teacher_flops > 0 ? 100 * r.student_flops / r.teacher_flops : 0.0,
                r.student_fp32_bytes, r.student_int8_bytes, r.temperature, r.pool_examples);
  notes.push_back(line);
}

std::vector<uint8_t> EncodeStudentModel(const StudentReport& r) {
  std::vector<uint8_t> out = {'F', 'R', 'S', 'F', 1};
  PutU32(out, static_cast<uint32_t>(r.student.size()));
  out.insert(out.end(), r.student.begin(), r.student.end());
  PutU32(out, static_cast<uint32_t>(r.student_weights.size()));
  for (float f : r.student_weights) {
    uint32_t v;
    std::memcpy(&v, &f, sizeof v);
    PutU32(out, v);
  }
  return out;
}

}  // namespace frugal
