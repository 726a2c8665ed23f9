#include "frugal/model/layers.h"

#include <algorithm>
#include <charconv>
#include <cstdint>

#include "frugal/model/sequential.h"

namespace frugal {
namespace {

constexpr size_t kMaxUnits = size_t{1} << 20;
constexpr size_t kMaxKernel = 31;
constexpr size_t kMaxValues = size_t{1} << 28;  // per tensor and in all parameters
constexpr size_t kMaxLayers = 256;

Result<size_t> Number(std::string_view s, std::string_view item, size_t max) {
  size_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v == 0 || v > max) {
    return InvalidArgumentError("layer '" + std::string(item) + "': '" + std::string(s) +
                                "' is not a whole number in [1, " + std::to_string(max) + "]");
  }
  return v;
}

std::vector<std::string_view> SplitOn(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const size_t cut = s.find(sep);
    out.push_back(s.substr(0, cut));
    if (cut == std::string_view::npos) return out;
    s.remove_prefix(cut + 1);
  }
}

std::string ShapeText(const TensorShape& s) {
  return std::to_string(s.height) + "x" + std::to_string(s.width) + "x" + std::to_string(s.channels);
}

std::string LayerName(size_t i, const LayerSpec& l) {
  static constexpr const char* kNames[] = {"dense", "conv2d", "maxpool", "relu", "dropout"};
  return "layer " + std::to_string(i + 1) + " (" + kNames[static_cast<int>(l.kind)] + ")";
}

}  // namespace

Result<std::vector<LayerSpec>> ParseLayerList(std::string_view text, TensorShape* input, size_t input_dim) {
  std::vector<LayerSpec> layers;
  bool have_input = false;
  *input = TensorShape{1, 1, input_dim};
  size_t pos = 0;
  while (pos < text.size()) {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n')) ++pos;
    size_t end = pos;
    while (end < text.size() && text[end] != ' ' && text[end] != '\t' && text[end] != '\n') ++end;
    const std::string_view item = text.substr(pos, end - pos);
    pos = end;
    if (item.empty()) continue;
    if (layers.size() >= kMaxLayers) return InvalidArgumentError("more than " + std::to_string(kMaxLayers) + " layers");
    const size_t open = item.find('(');
    const std::string_view kind = item.substr(0, open);
    std::vector<std::string_view> args;
    if (open != std::string_view::npos) {
      if (item.back() != ')' || item.size() < open + 2) {
        return InvalidArgumentError("layer '" + std::string(item) + "': expected name(arguments)");
      }
      args = SplitOn(item.substr(open + 1, item.size() - open - 2), ',');
    }
    auto want = [&](size_t n) -> Status {
      if (args.size() == n) return OkStatus();
      return InvalidArgumentError("layer '" + std::string(item) + "' takes " + std::to_string(n) + " argument(s)");
    };
    LayerSpec l;
    if (kind == "input") {
      if (have_input || !layers.empty()) return InvalidArgumentError("input(HxWxC) must come first, once");
      FRUGAL_RETURN_IF_ERROR(want(1));
      const std::vector<std::string_view> dims = SplitOn(args[0], 'x');
      if (dims.size() != 3) return InvalidArgumentError("layer '" + std::string(item) + "': expected input(HxWxC)");
      FRUGAL_ASSIGN_OR_RETURN(input->height, Number(dims[0], item, kMaxUnits));
      FRUGAL_ASSIGN_OR_RETURN(input->width, Number(dims[1], item, kMaxUnits));
      FRUGAL_ASSIGN_OR_RETURN(input->channels, Number(dims[2], item, kMaxUnits));
      have_input = true;
      continue;
    } else if (kind == "dense") {
      FRUGAL_RETURN_IF_ERROR(want(1));
      l.kind = LayerSpec::Kind::kDense;
      FRUGAL_ASSIGN_OR_RETURN(l.units, Number(args[0], item, kMaxUnits));
    } else if (kind == "conv2d") {
      FRUGAL_RETURN_IF_ERROR(want(2));
      l.kind = LayerSpec::Kind::kConv2d;
      FRUGAL_ASSIGN_OR_RETURN(l.units, Number(args[0], item, kMaxUnits));
      FRUGAL_ASSIGN_OR_RETURN(l.kernel, Number(args[1], item, kMaxKernel));
      if (l.kernel % 2 == 0) return InvalidArgumentError("layer '" + std::string(item) + "': the kernel must be odd ('same' padding)");
    } else if (kind == "maxpool") {
      FRUGAL_RETURN_IF_ERROR(want(1));
      l.kind = LayerSpec::Kind::kMaxPool;
      FRUGAL_ASSIGN_OR_RETURN(l.kernel, Number(args[0], item, kMaxKernel));
    } else if (kind == "relu") {
      FRUGAL_RETURN_IF_ERROR(want(0));
      l.kind = LayerSpec::Kind::kRelu;
    } else if (kind == "dropout") {
      FRUGAL_RETURN_IF_ERROR(want(1));
      l.kind = LayerSpec::Kind::kDropout;
      const std::string_view a = args[0];
      const auto [e, ec] = std::from_chars(a.data(), a.data() + a.size(), l.rate);
      if (a.empty() || ec != std::errc() || e != a.data() + a.size() || !(l.rate >= 0 && l.rate < 1)) {
        return InvalidArgumentError("layer '" + std::string(item) + "': the rate must be a number in [0, 1)");
      }
    } else {
      return InvalidArgumentError("unknown layer '" + std::string(item) +
                                  "' (known: input, dense, conv2d, maxpool, relu, dropout)");
    }
    layers.push_back(l);
  }
  if (layers.empty()) return InvalidArgumentError("the layer list is empty");
  return layers;
}

Result<LayerPlan> PlanLayers(TensorShape input, std::vector<LayerSpec> layers, size_t num_classes) {
  LayerPlan plan;
  plan.input = input;
  if (input.size() == 0 || input.size() > kMaxValues) return InvalidArgumentError("input " + ShapeText(input) + " is out of range");
  TensorShape s = input;
  bool flat = input.height == 1 && input.width == 1;
  bool first_weighted = true;
  double params = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerSpec& l = layers[i];
    const std::string name = LayerName(i, l);
    double macs = 0, bias = 0;
    switch (l.kind) {
      case LayerSpec::Kind::kDense:
        macs = static_cast<double>(s.size()) * static_cast<double>(l.units);
        bias = static_cast<double>(l.units);
        params += macs + bias;
        s = TensorShape{1, 1, l.units};
        flat = true;
        break;
      case LayerSpec::Kind::kConv2d:
        if (flat) return InvalidArgumentError(name + " needs an image, got a flat vector of " + std::to_string(s.size()));
        macs = static_cast<double>(s.height * s.width) * static_cast<double>(l.units) *
               static_cast<double>(l.kernel * l.kernel * s.channels);
        bias = static_cast<double>(s.height * s.width * l.units);
        params += static_cast<double>(l.units) * static_cast<double>(l.kernel * l.kernel * s.channels) + l.units;
        s.channels = l.units;  // 'same' padding keeps height and width
        break;
      case LayerSpec::Kind::kMaxPool:
        if (flat) return InvalidArgumentError(name + " needs an image, got a flat vector of " + std::to_string(s.size()));
        if (l.kernel > s.height || l.kernel > s.width) {
          return InvalidArgumentError(name + ": a " + std::to_string(l.kernel) + "x" + std::to_string(l.kernel) +
                                      " window does not fit a " + ShapeText(s) + " input");
        }
        s.height /= l.kernel;
        s.width /= l.kernel;
        break;
      case LayerSpec::Kind::kRelu:
      case LayerSpec::Kind::kDropout:
        if (i + 1 == layers.size()) {
          return InvalidArgumentError(name + " comes last: the last layer must be dense(" +
                                      std::to_string(num_classes) + "), whose logits go to the softmax");
        }
        break;
    }
    if (s.size() > kMaxValues || params > static_cast<double>(kMaxValues)) {
      return InvalidArgumentError(name + ": more than " + std::to_string(kMaxValues) + " values");
    }
    if (macs > 0) {
      plan.flops.forward += 2 * macs + bias;
      plan.flops.backward += 2 * macs + bias;          // weight and bias gradients
      if (!first_weighted) plan.flops.backward += 2 * macs;  // input gradient, never for the first weighted layer
      first_weighted = false;
    }
    plan.outputs.push_back(s);
  }
  const LayerSpec& last = layers.back();
  if (last.kind != LayerSpec::Kind::kDense || last.units != num_classes) {
    return InvalidArgumentError("the last layer must be dense(" + std::to_string(num_classes) +
                                ") for the data's classes, got " + LayerName(layers.size() - 1, last) +
                                (last.kind == LayerSpec::Kind::kDense ? " of " + std::to_string(last.units) : ""));
  }
  plan.num_params = static_cast<size_t>(params);
  plan.layers = std::move(layers);
  return plan;
}

Result<std::unique_ptr<Model>> MakeLayerModel(std::string_view text, size_t input_dim, size_t num_classes) {
  TensorShape input;
  FRUGAL_ASSIGN_OR_RETURN(std::vector<LayerSpec> layers, ParseLayerList(text, &input, input_dim));
  const bool conv = std::any_of(layers.begin(), layers.end(), [](const LayerSpec& l) {
    return l.kind == LayerSpec::Kind::kConv2d || l.kind == LayerSpec::Kind::kMaxPool;
  });
  if (conv && input.height == 1 && input.width == 1) {
    // A flat input for a convolution: a square single-channel image of input_dim pixels.
    size_t side = 1;
    while ((side + 1) * (side + 1) <= input_dim) ++side;
    if (side * side != input_dim) {
      return InvalidArgumentError("conv2d needs an image: give input(HxWxC); input_dim " + std::to_string(input_dim) +
                                  " is not a square");
    }
    input = TensorShape{side, side, 1};
  }
  if (input.size() != input_dim) {
    return InvalidArgumentError("input(" + ShapeText(input) + ") holds " + std::to_string(input.size()) +
                                " values, the data has " + std::to_string(input_dim) + " features");
  }
  FRUGAL_ASSIGN_OR_RETURN(LayerPlan plan, PlanLayers(input, std::move(layers), num_classes));
  using K = LayerSpec::Kind;
  const std::vector<LayerSpec>& L = plan.layers;
  // A dense stack with ReLU between its layers: Mlp.
  bool mlp = true;
  std::vector<size_t> sizes = {input.size()};
  for (size_t i = 0; i < L.size() && mlp; ++i) {
    const bool hidden_pair = L[i].kind == K::kDense && i + 1 < L.size() && L[i + 1].kind == K::kRelu;
    if (hidden_pair) {
      sizes.push_back(L[i].units);
      ++i;
    } else if (L[i].kind == K::kDense && i + 1 == L.size()) {
      sizes.push_back(L[i].units);
    } else {
      mlp = false;
    }
  }
  if (mlp) return std::unique_ptr<Model>(new Mlp(sizes, "layers"));
  // conv-relu-pool(2) twice with one kernel, then dense-relu-dense: Cnn.
  if (L.size() == 9 && L[0].kind == K::kConv2d && L[1].kind == K::kRelu && L[2].kind == K::kMaxPool &&
      L[2].kernel == 2 && L[3].kind == K::kConv2d && L[3].kernel == L[0].kernel && L[4].kind == K::kRelu &&
      L[5].kind == K::kMaxPool && L[5].kernel == 2 && L[6].kind == K::kDense && L[7].kind == K::kRelu &&
      input.height >= 4 && input.width >= 4) {
    CnnConfig cfg{.height = input.height, .width = input.width, .channels = input.channels, .kernel = L[0].kernel,
                  .conv1_channels = L[0].units, .conv2_channels = L[3].units, .dense_units = L[6].units,
                  .num_classes = num_classes};
    return std::unique_ptr<Model>(new Cnn(cfg, "layers"));
  }
  // Any other valid list: the general sequential model.
  return std::unique_ptr<Model>(new Sequential(std::move(plan)));
}

Result<std::string> BuiltinLayerList(std::string_view name, size_t input_dim, size_t num_classes) {
  const std::string out = "dense(" + std::to_string(num_classes) + ")";
  if (name == "logreg") return out;
  if (name == "mlp" || name == "2nn") return "dense(200) relu dense(200) relu " + out;
  if (name == "cnn") {
    if (input_dim != 784) return InvalidArgumentError("model 'cnn' takes 28x28x1 images");
    return "input(28x28x1) conv2d(32,5) relu maxpool(2) conv2d(64,5) relu maxpool(2) dense(512) relu " + out;
  }
  return InvalidArgumentError("unknown built-in model '" + std::string(name) + "'");
}

}  // namespace frugal
