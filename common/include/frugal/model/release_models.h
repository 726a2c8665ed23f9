// What a run publishes beside its released model, the same in every front
// end: its int8 accuracy (eval.int8) and a distilled student ([distill]),
// with sizes, FLOPs and accuracies in fp32 and int8, as summary metrics, a
// note, and the files' bytes. Configuration is read by ReadRunSettings
// (frugal/round/settings.h); this module does no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/model/distill.h"
#include "frugal/model/model.h"
#include "frugal/train/trainer.h"

namespace frugal {

// [distill]: at_end = true distils the released model at the end of the run.
struct DistillSettings {
  bool at_end = false;
  DistillConfig config;
};

// Reads nothing; checks a DistillSettings (from a configuration) and names the bad key.
Status CheckDistillSettings(const DistillSettings& s);

// The pool: pool_examples rows drawn without replacement, seeded, from the
// training split (of train_size rows), ascending. The distiller never reads
// their labels: it stands in for unlabeled data of the same domain that a
// coordinator holds (a deployment's public or synthetic pool), and it never
// overlaps the test split the student is scored on.
std::vector<uint32_t> DistillPoolRows(size_t train_size, uint32_t pool_examples, uint64_t run_seed);

// The teacher and its student, as published.
struct StudentReport {
  std::string student;  // the spec, e.g. "mlp:32"
  size_t teacher_params = 0, student_params = 0;
  size_t teacher_fp32_bytes = 0, teacher_int8_bytes = 0;  // 4 bytes a parameter; EncodeInt8Model's size
  size_t student_fp32_bytes = 0, student_int8_bytes = 0;
  double teacher_flops = 0, student_flops = 0;  // forward FLOPs per example (model.h's rules)
  double teacher_accuracy = 0, teacher_int8_accuracy = -1;  // -1: no int8 model (not dense)
  double student_accuracy = 0, student_int8_accuracy = 0;
  size_t pool_examples = 0;
  double temperature = 0;
  DistillStats stats;
  std::vector<float> student_weights;  // the student's parameters (Mlp layout)
  std::vector<uint8_t> student_int8;   // EncodeInt8Model of the student
};

// Distils the released model `teacher_params` into cfg.student on the pool
// DistillPoolRows(train.size(), cfg.pool_examples, run_seed) and scores
// teacher and student, fp32 and int8, on the rows `test_rows` of test (empty
// = all). The student starts from Model::InitParams with a seed derived from
// run_seed. Errors as Distill and Evaluate.
Result<StudentReport> DistillReleased(const Model& teacher, std::span<const float> teacher_params,
                                      const Dataset& train, const Dataset& test, std::span<const uint32_t> test_rows,
                                      const DistillConfig& cfg, uint64_t run_seed);

// The released model's int8 evaluation (EvaluateInt8 of its quantization)
// on the rows `rows` of data (empty = all); nullopt for a model that is not
// dense (the CNN), which has no int8 kernel yet.
Result<std::optional<EvalResult>> EvaluateReleasedInt8(const Model& model, std::span<const float> params,
                                                       const Dataset& data, std::span<const uint32_t> rows);

// Adds the report to a run summary's metrics ("student_accuracy", ...) and a
// sentence to its notes.
void AddStudentToSummary(const StudentReport& r, std::map<std::string, double>& metrics,
                         std::vector<std::string>& notes);

// The student's parameters as a file: "FRSF", u8 version 1, u32 spec length,
// the spec, u32 parameter count, the float parameters; little-endian.
std::vector<uint8_t> EncodeStudentModel(const StudentReport& r);

}  // namespace frugal
