// Knowledge distillation of a released dense model (the teacher) into a
// smaller dense student (a narrower MLP or a logistic regression) on an
// unlabeled pool: soft targets softmax(teacher logits / T), loss T^2 *
// KL(teacher || student at T) (Hinton et al. 2015), mini-batch SGD with
// momentum. The pool's labels are never read. No I/O; deterministic for a seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/model/eigen.h"
#include "frugal/model/model.h"

namespace frugal {

struct DistillConfig {
  std::string student = "mlp:32";  // "logreg" or "mlp:H[-H2...]" (hidden widths)
  uint32_t pool_examples = 10000;  // size of the unlabeled pool
  int epochs = 10;
  int batch_size = 64;
  float learning_rate = 0.05f;
  float momentum = 0.9f;
  double temperature = 4.0;
  uint64_t seed = 0;
};

// The student architecture of a spec: "logreg" (input -> classes) or "mlp:H"
// / "mlp:H1-H2..." (ReLU hidden layers of those widths). Errors name the spec.
Result<std::unique_ptr<Mlp>> MakeStudent(std::string_view spec, size_t input_dim, size_t num_classes);

// The teacher's float logits of the rows `rows` of data, row-major
// (rows.size() x classes). The teacher must be dense (an Mlp); a CNN is
// refused (kInvalidArgument): its logits are not reachable through Model yet.
Result<std::vector<float>> DenseLogits(const Model& teacher, std::span<const float> params, const Dataset& data,
                                       std::span<const uint32_t> rows);

// Scratch of SoftTargetLoss; one per thread.
struct DistillWorkspace {
  std::vector<Eigen::MatrixXf> acts;
  Eigen::MatrixXf g, g_prev;
  std::vector<double> q;
};

// Mean over the n examples (rows of x, row-major) of T^2 * KL(targets ||
// softmax(student logits / T)); targets row-major (n x classes), each row a
// distribution. If grad is non-empty (size num_params), writes the gradient
// of that mean into it.
double SoftTargetLoss(const Mlp& student, std::span<const float> params, const float* x, size_t n,
                      const float* targets, double temperature, std::span<float> grad, DistillWorkspace& ws);

struct DistillStats {
  double first_epoch_loss = 0;  // mean T^2 * KL over the pool, first epoch
  double last_epoch_loss = 0;   // the same, last epoch
  size_t examples = 0;          // epochs * pool size
  double flops = 0;             // teacher forward over the pool + student forward and backward, model.h's rules
};

// Trains student_params (initialised by the caller) to match the teacher's
// soft targets on the rows `pool` of data (labels ignored). Checks the config
// (epochs, batch size >= 1; temperature > 0; finite rates), the shapes and the
// rows; kInvalidArgument naming what is wrong, and on a non-finite loss.
Result<DistillStats> Distill(const Model& teacher, std::span<const float> teacher_params, const Mlp& student,
                             std::span<float> student_params, const Dataset& data, std::span<const uint32_t> pool,
                             const DistillConfig& cfg);

}  // namespace frugal
