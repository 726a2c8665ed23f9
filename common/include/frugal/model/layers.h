// Models described in configuration: a layer list such as
//   "layers: input(28x28x1) conv2d(32,5) relu maxpool(2) conv2d(64,5) relu maxpool(2) dense(512) relu dense(10)"
// (dense, conv2d with 'same' padding, max pooling, ReLU, dropout), its shapes
// checked when it is read, and its parameter count and exact FLOPs counted
// by the rules of frugal/model/model.h. MakeModel("layers: ...") builds it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/model/model.h"

namespace frugal {

struct LayerSpec {
  enum class Kind { kDense, kConv2d, kMaxPool, kRelu, kDropout };
  Kind kind = Kind::kDense;
  size_t units = 0;   // dense: outputs; conv2d: filters
  size_t kernel = 0;  // conv2d: odd kernel side; maxpool: window side (= stride)
  double rate = 0;    // dropout: probability of dropping, in [0, 1)
};

// Height x width x channels; a flat vector of n values is 1 x 1 x n.
struct TensorShape {
  size_t height = 1, width = 1, channels = 1;
  size_t size() const { return height * width * channels; }
};

// A checked layer list: every layer's output shape, the parameter count and FLOPs.
struct LayerPlan {
  TensorShape input;
  std::vector<LayerSpec> layers;
  std::vector<TensorShape> outputs;  // after each layer
  size_t num_params = 0;
  FlopCount flops;                   // per example, model.h's counting rules
};

// Parses the text after "layers:": whitespace-separated items, optionally led
// by input(HxWxC) (else the input is the flat input_dim, and a conv2d needs a
// square single-channel image of input_dim pixels). Errors name the item.
Result<std::vector<LayerSpec>> ParseLayerList(std::string_view text, TensorShape* input, size_t input_dim);

// Checks shapes: the input matches input_dim, a conv2d or maxpool sees an
// image (not after a dense layer), a pool window fits, the last layer is a
// dense layer of num_classes units (its logits go to the softmax), sizes are
// within limits. Errors name the layer (1-based) and the shapes.
Result<LayerPlan> PlanLayers(TensorShape input, std::vector<LayerSpec> layers, size_t num_classes);

// "layers: ..." as a model. A dense stack with ReLU between layers runs as
// Mlp (any depth), and conv2d-relu-maxpool(2) twice with one kernel size then
// dense-relu-dense as Cnn: the built-ins fuse ReLU and pooling into their
// layers. Every other valid list runs as a Sequential
// (frugal/model/sequential.h). Errors are the parser's and PlanLayers'.
Result<std::unique_ptr<Model>> MakeLayerModel(std::string_view text, size_t input_dim, size_t num_classes);

// The layer list of a built-in model ("logreg", "mlp"/"2nn", "cnn"), in the
// syntax above: each built-in is expressible as a layer list.
Result<std::string> BuiltinLayerList(std::string_view name, size_t input_dim, size_t num_classes);

}  // namespace frugal
