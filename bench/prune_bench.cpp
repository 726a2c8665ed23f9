// frugal-prune-bench: the CPU time of one client update (local training as
// fmnist-dir0.5 configures it: 2 epochs, batch 32, 600 real Fashion-MNIST
// examples) on the unpruned 2NN and on narrower shapes of it, timed back to
// back in one process, alternating so that a busy machine slows both alike.
// One JSON object per shape on stdout, with its FLOPs per example and its
// time per update relative to the unpruned shape.
//
//   frugal-prune-bench [--seconds S] [--rounds R] [--fmnist-dir DIR] [--fractions 0.5,...] [--widths 0.5,...]
//                      [--model 2nn|cnn] [--examples N]
//
// --model cnn: the McMahan CNN and its channel-pruned shapes instead (no
// --widths: [widths] is for MLPs); --examples: the update's examples (600 by
// default; the CNN's update is some 60x the 2NN's work, so fewer keep it short).
// --fractions: shapes pruned to that fraction of the FLOPs per example
// (WidthsForFlopsFraction, what [prune] reaches); --widths: hidden layers
// scaled to that fraction of their units (a per-device width).

#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "frugal/data/dataset.h"
#include "frugal/model/model.h"
#include "frugal/model/prune.h"
#include "frugal/train/trainer.h"

namespace frugal {
namespace {

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::vector<double> ParseList(const std::string& s) {
  std::vector<double> out;
  size_t at = 0;
  while (at < s.size()) {
    const size_t comma = s.find(',', at);
    out.push_back(std::atof(s.substr(at, comma - at).c_str()));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

struct Shape {
  std::string label;
  std::vector<uint32_t> sizes;  // PrunableSizes
  double cpu = 0;  // CPU seconds, summed over the timed updates
  size_t updates = 0;
};

int Main(int argc, char** argv) {
  double seconds = 1.0;
  int rounds = 5;
  std::string dir = FRUGAL_FMNIST_DIR, fractions = "0.5", widths = "0.5", model_name = "2nn";
  uint32_t examples = 600;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--fmnist-dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--fractions" && i + 1 < argc) {
      fractions = argv[++i];
    } else if (a == "--widths" && i + 1 < argc) {
      widths = argv[++i];
    } else if (a == "--model" && i + 1 < argc) {
      model_name = argv[++i];
    } else if (a == "--examples" && i + 1 < argc) {
      examples = static_cast<uint32_t>(std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "usage: frugal-prune-bench [--seconds S] [--rounds R] [--fmnist-dir DIR] [--fractions F,...] "
                   "[--widths W,...] [--model 2nn|cnn] [--examples N]\n");
      return 2;
    }
  }
  auto train = LoadFashionMnist(Split::kTrain, dir);
  if (!train.ok()) {
    std::fprintf(stderr, "%s\n", train.error().ToString().c_str());
    return 1;
  }
  auto unpruned = MakeModel(model_name);
  if (!unpruned.ok() || PrunableSizes(**unpruned).empty() || examples == 0 || examples > train->size()) {
    std::fprintf(stderr, "--model must be 2nn or cnn and --examples in [1, %zu]\n", train->size());
    return 2;
  }
  const std::vector<uint32_t> full = PrunableSizes(**unpruned);
  const std::optional<CnnGeometry> cnn = CnnGeometryOf(**unpruned);
  std::vector<Shape> shapes{{"unpruned", full}};
  for (double f : ParseList(fractions)) {
    const std::vector<uint32_t> w = WidthsForFlopsFraction(full, f, cnn);
    std::vector<uint32_t> sizes = full;
    std::copy(w.begin(), w.end(), sizes.begin() + 1);
    shapes.push_back({"flops" + std::to_string(f).substr(0, 4), sizes});
  }
  for (double f : cnn ? std::vector<double>{} : ParseList(widths)) {
    const auto k = static_cast<uint32_t>(200 * f);
    shapes.push_back({"width" + std::to_string(f).substr(0, 4), {784, k, k, 10}});
  }
  std::vector<uint32_t> rows(examples);
  std::iota(rows.begin(), rows.end(), 0u);
  const TrainConfig cfg{.epochs = 2, .batch_size = 32, .learning_rate = 0.05f, .seed = 1};
  // Alternate the shapes `rounds` times, each for at least `seconds` of CPU time.
  for (int r = 0; r < rounds; ++r) {
    for (Shape& s : shapes) {
      auto built = MakePrunedModel(s.sizes, cnn, model_name);
      if (!built.ok()) return 1;
      const Model& m = **built;
      std::vector<float> init(m.num_params()), params;
      m.InitParams(init, 1);
      auto ws = m.MakeWorkspace();
      params = init;
      if (!Train(m, params, *train, rows, cfg, *ws).ok()) return 1;  // warm-up
      const double start = ProcessCpuSeconds();
      do {
        params = init;
        if (!Train(m, params, *train, rows, cfg, *ws).ok()) return 1;
        ++s.updates;
      } while (ProcessCpuSeconds() - start < seconds);
      s.cpu += ProcessCpuSeconds() - start;
    }
  }
  const double base = shapes[0].cpu / static_cast<double>(shapes[0].updates);
  for (const Shape& s : shapes) {
    const double per = s.cpu / static_cast<double>(s.updates);
    std::string sizes;
    for (uint32_t z : s.sizes) {
      if (!sizes.empty()) sizes += '-';
      sizes += std::to_string(z);
    }
    std::printf("{\"model\":\"%s\",\"shape\":\"%s\",\"sizes\":\"%s\",\"params\":%zu,\"examples\":%u,"
                "\"train_flops_per_example\":%.0f,\"flops_fraction\":%.4f,"
                "\"updates\":%zu,\"cpu_ms_per_update\":%.3f,\"speedup_vs_unpruned\":%.3f}\n",
                model_name.c_str(), s.label.c_str(), sizes.c_str(), ShapeParamCount(s.sizes, cnn), examples,
                ShapeTrainFlops(s.sizes, cnn), ShapeTrainFlops(s.sizes, cnn) / ShapeTrainFlops(full, cnn), s.updates,
                per * 1e3, base / per);
  }
  return 0;
}

}  // namespace
}  // namespace frugal

int main(int argc, char** argv) { return frugal::Main(argc, argv); }
