// An application that embeds the Frugal agent through the C ABI only
// (frugal/client/frugal_embed.h): it owns its data (a CSV file whose last
// column is the label, read and standardised here) and its training (softmax
// regression written by hand on the flat parameter buffer, in the layout of
// the coordinator's "logreg" model); Frugal does the rest. With --simulate
// the same training runs for every client of a simulated fleet, in this
// process, on the scenario's data (frugal_embed_simulate; the scenario's
// model must be "logreg").
//   frugal-embed-example DATA.csv --part I/N [--header] [--config client.toml] [--set key=value ...]
//   frugal-embed-example --simulate SCENARIO.toml [--out DIR] [--set key=value ...]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "frugal/client/frugal_embed.h"

namespace {

struct App {
  size_t dim = 0, classes = 0;
  std::vector<float> x;  // rows of dim
  std::vector<int> y;
  size_t n() const { return y.size(); }
};

// Reads rows "f1,...,fd,label", keeping those with row % parts == part; standardises each feature.
bool Load(const char* path, bool header, unsigned part, unsigned parts, App& app) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  if (header) std::getline(in, line);
  for (size_t row = 0; std::getline(in, line); ++row) {
    if (line.empty()) continue;
    std::vector<float> v;
    std::stringstream ss(line);
    for (std::string f; std::getline(ss, f, ',');) v.push_back(std::strtof(f.c_str(), nullptr));
    if (v.size() < 2) return false;
    if (app.dim == 0) app.dim = v.size() - 1;
    if (v.size() != app.dim + 1) return false;
    const int label = static_cast<int>(v.back());
    if (label + 1 > static_cast<int>(app.classes)) app.classes = static_cast<size_t>(label + 1);
    if (row % parts != part) continue;
    app.x.insert(app.x.end(), v.begin(), v.end() - 1);
    app.y.push_back(label);
  }
  for (size_t j = 0; j < app.dim; ++j) {
    double s = 0, q = 0;
    for (size_t i = 0; i < app.n(); ++i) s += app.x[i * app.dim + j];
    const double mean = s / static_cast<double>(app.n());
    for (size_t i = 0; i < app.n(); ++i) q += (app.x[i * app.dim + j] - mean) * (app.x[i * app.dim + j] - mean);
    const double sd = std::sqrt(q / static_cast<double>(app.n()));
    for (size_t i = 0; i < app.n(); ++i) {
      float& v = app.x[i * app.dim + j];
      v = sd > 0 ? static_cast<float>((v - mean) / sd) : 0.0f;
    }
  }
  return app.n() > 0 && app.classes >= 2;
}

// Softmax probabilities of example i; weights are column-major dim x classes, then biases.
void Probabilities(const App& a, const float* w, size_t i, std::vector<double>& p) {
  const float* b = w + a.dim * a.classes;
  double mx = -1e300;
  for (size_t c = 0; c < a.classes; ++c) {
    double z = b[c];
    for (size_t j = 0; j < a.dim; ++j) z += static_cast<double>(w[j + c * a.dim]) * a.x[i * a.dim + j];
    p[c] = z;
    mx = std::max(mx, z);
  }
  double s = 0;
  for (double& v : p) s += (v = std::exp(v - mx));
  for (double& v : p) v /= s;
}

int Train(void* user, float* w, size_t n_params, const frugal_train_request* r, frugal_train_report* out) {
  App& a = *static_cast<App*>(user);
  if (n_params != a.dim * a.classes + a.classes) return 1;
  std::mt19937_64 rng(r->seed);
  std::vector<size_t> order(a.n());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::vector<double> p(a.classes);
  std::vector<double> g(n_params);
  double loss = 0;
  for (uint32_t e = 0; e < r->epochs; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t start = 0; start < order.size(); start += r->batch_size) {
      const size_t end = std::min(order.size(), start + r->batch_size);
      std::fill(g.begin(), g.end(), 0.0);
      for (size_t k = start; k < end; ++k) {
        const size_t i = order[k];
        Probabilities(a, w, i, p);
        loss -= std::log(std::max(p[static_cast<size_t>(a.y[i])], 1e-12));
        for (size_t c = 0; c < a.classes; ++c) {
          const double d = p[c] - (static_cast<int>(c) == a.y[i] ? 1.0 : 0.0);
          for (size_t j = 0; j < a.dim; ++j) g[j + c * a.dim] += d * a.x[i * a.dim + j];
          g[a.dim * a.classes + c] += d;
        }
      }
      const double scale = r->learning_rate / static_cast<double>(end - start);
      for (size_t k = 0; k < n_params; ++k) w[k] -= static_cast<float>(scale * g[k]);
    }
  }
  out->examples = static_cast<uint64_t>(r->epochs) * a.n();
  out->mean_loss = out->examples ? loss / static_cast<double>(out->examples) : 0;
  // Forward and backward multiply-adds, as Frugal counts them for a one-layer model.
  out->flops = static_cast<double>(out->examples) * 2.0 * (2.0 * a.dim * a.classes + a.classes);
  return 0;
}

int Evaluate(void* user, const float* w, size_t n_params, frugal_eval_report* out) {
  App& a = *static_cast<App*>(user);
  if (n_params != a.dim * a.classes + a.classes) return 1;
  std::vector<double> p(a.classes);
  size_t right = 0;
  double loss = 0;
  for (size_t i = 0; i < a.n(); ++i) {
    Probabilities(a, w, i, p);
    size_t best = 0;
    for (size_t c = 1; c < a.classes; ++c) best = p[c] > p[best] ? c : best;
    right += static_cast<int>(best) == a.y[i];
    loss -= std::log(std::max(p[static_cast<size_t>(a.y[i])], 1e-12));
  }
  *out = {a.n(), static_cast<double>(right) / static_cast<double>(a.n()), loss / static_cast<double>(a.n())};
  return 0;
}

// A simulated client's training: the same Train, on the rows the simulator hands over.
int TrainClient(void*, const frugal_client_data* d, float* w, size_t n_params, const frugal_train_request* r,
                frugal_train_report* out) {
  App a;
  a.dim = d->input_dim;
  a.classes = n_params / (a.dim + 1);
  if (a.classes < 2 || a.classes * (a.dim + 1) != n_params) return 1;
  a.x.assign(d->features, d->features + d->num_examples * d->input_dim);
  a.y.assign(d->labels, d->labels + d->num_examples);
  return Train(&a, w, n_params, r, out);
}

int Simulate(int argc, char** argv) {
  const char* scenario = argv[2];
  const char* out = "";
  std::vector<const char*> sets;
  for (int i = 3; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--out") && i + 1 < argc) {
      out = argv[++i];
    } else if (!std::strcmp(argv[i], "--set") && i + 1 < argc) {
      sets.push_back(argv[++i]);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  frugal_sim_trainer t{};
  t.struct_size = sizeof t;
  t.train = TrainClient;
  char error[512] = "";
  const int rc = frugal_embed_simulate(scenario, sets.data(), sets.size(), out, &t, error, sizeof error);
  if (rc != 0) std::fprintf(stderr, "frugal: %s\n", error);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && !std::strcmp(argv[1], "--simulate")) return Simulate(argc, argv);
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s DATA.csv --part I/N [--header] [--config client.toml] [--set key=value ...]\n"
                 "       %s --simulate SCENARIO.toml [--out DIR] [--set key=value ...]\n",
                 argv[0], argv[0]);
    return 2;
  }
  unsigned part = 0, parts = 1;
  bool header = false;
  const char* config = "";
  std::vector<const char*> sets;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--part") && i + 1 < argc) {
      if (std::sscanf(argv[++i], "%u/%u", &part, &parts) != 2 || parts == 0 || part >= parts) return 2;
    } else if (!std::strcmp(argv[i], "--header")) {
      header = true;
    } else if (!std::strcmp(argv[i], "--config") && i + 1 < argc) {
      config = argv[++i];
    } else if (!std::strcmp(argv[i], "--set") && i + 1 < argc) {
      sets.push_back(argv[++i]);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  App app;
  if (!Load(argv[1], header, part, parts, app)) {
    std::fprintf(stderr, "cannot read %s as rows of numbers with a label last\n", argv[1]);
    return 2;
  }
  std::printf("embed ABI %d: %zu examples, %zu features, %zu classes\n", frugal_embed_abi_version(), app.n(), app.dim,
              app.classes);
  frugal_trainer t{};
  t.struct_size = sizeof t;
  t.user = &app;
  t.input_dim = static_cast<uint32_t>(app.dim);
  t.num_classes = static_cast<uint32_t>(app.classes);
  t.num_examples = app.n();
  t.train = Train;
  t.evaluate = Evaluate;
  char error[512] = "";
  const int rc = frugal_embed_run(config, sets.data(), sets.size(), &t, error, sizeof error);
  if (rc != 0) std::fprintf(stderr, "frugal: %s\n", error);
  return rc;
}
