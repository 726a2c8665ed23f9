// int8 evaluation against fp32 evaluation, in the same process (issue 15,
// item 3): trains each model centrally on Fashion-MNIST for a given seed,
// then evaluates the 10,000 test images with frugal::Evaluate (fp32, Eigen)
// and with EvaluateInt8 (every int8 kernel compiled in), reporting accuracy
// and the median thread CPU time per full evaluation; the speed ratio is
// fp32 time / int8 time. docs/benchmarks.md, "int8 evaluation".
//   frugal-int8-bench [--seeds 1,2,3] [--models mlp,logreg,layers:...] [--reps 7] [--epochs 2]
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "frugal/data/dataset.h"
#include "frugal/model/int8.h"
#include "frugal/model/model.h"
#include "frugal/train/trainer.h"
#include "measure.h"

namespace {

std::vector<std::string> SplitList(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace frugal;
  std::vector<std::string> seeds = {"1", "2", "3"}, models = {"mlp", "logreg"};
  int reps = 7, epochs = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--seeds") seeds = SplitList(value, ',');
    else if (flag == "--models") models = SplitList(value, ',');
    else if (flag == "--reps") reps = std::atoi(value.c_str());
    else if (flag == "--epochs") epochs = std::atoi(value.c_str());
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  auto train = LoadFashionMnist(Split::kTrain);
  auto test = LoadFashionMnist(Split::kTest);
  if (!train.ok() || !test.ok()) {
    std::fprintf(stderr, "Fashion-MNIST: %s\n", (train.ok() ? test.status() : train.status()).ToString().c_str());
    return 1;
  }
  std::vector<uint32_t> all(train->size());
  std::iota(all.begin(), all.end(), 0u);
  std::printf("model,seed,kernel,fp32_accuracy,int8_accuracy,diff_points,fp32_cpu_s,int8_cpu_s,speedup,fp32_bytes,int8_bytes\n");
  for (const std::string& name : models) {
    auto model = MakeModel(name);
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
      return 1;
    }
    const Model& m = **model;
    for (const std::string& seed_text : seeds) {
      const uint64_t seed = std::strtoull(seed_text.c_str(), nullptr, 10);
      std::vector<float> params(m.num_params());
      m.InitParams(params, seed);
      auto ws = m.MakeWorkspace();
      auto stats = Train(m, params, *train, all,
                         TrainConfig{.epochs = epochs, .batch_size = 32, .learning_rate = 0.05f, .seed = seed}, *ws);
      if (!stats.ok()) {
        std::fprintf(stderr, "%s\n", stats.status().ToString().c_str());
        return 1;
      }
      auto q = Int8Mlp::Quantize(m, params);
      if (!q.ok()) {
        std::fprintf(stderr, "%s\n", q.status().ToString().c_str());
        return 1;
      }
      EvalResult fp32;
      const bench::Timing t32 = bench::Measure(reps, [&] { fp32 = *Evaluate(m, params, *test, {}, *ws); }, 1);
      for (const Int8Kernel& k : Int8Kernels()) {
        Int8Workspace iws;
        EvalResult i8;
        const int r = k.name == "reference" ? 1 : reps;
        const bench::Timing t8 = bench::Measure(r, [&] { i8 = *EvaluateInt8(*q, *test, {}, iws, 256, &k); }, 1);
        std::printf("%s,%llu,%.*s,%.4f,%.4f,%+.2f,%.4f,%.4f,%.2f,%zu,%zu\n", name.c_str(),
                    static_cast<unsigned long long>(seed), static_cast<int>(k.name.size()), k.name.data(),
                    fp32.accuracy, i8.accuracy, 100 * (i8.accuracy - fp32.accuracy), t32.cpu_s, t8.cpu_s,
                    t32.cpu_s / t8.cpu_s, m.num_params() * sizeof(float), q->encoded_bytes());
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
