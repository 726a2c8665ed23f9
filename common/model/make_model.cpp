#include <string>

#include "frugal/model/layers.h"
#include "frugal/model/model.h"

namespace frugal {

Result<std::unique_ptr<Model>> MakeModel(std::string_view name, size_t input_dim, size_t num_classes) {
  if (input_dim == 0 || num_classes < 2) {
    return InvalidArgumentError("model '" + std::string(name) + "' needs input_dim > 0 and num_classes >= 2, got " +
                                std::to_string(input_dim) + " and " + std::to_string(num_classes));
  }
  // "layers: <list>" (frugal/model/layers.h): a model described in configuration.
  if (name.substr(0, 7) == "layers:") return MakeLayerModel(name.substr(7), input_dim, num_classes);
  if (name == "logreg") return std::unique_ptr<Model>(new Mlp({input_dim, num_classes}, "logreg"));
  if (name == "mlp" || name == "2nn") {
    return std::unique_ptr<Model>(new Mlp({input_dim, 200, 200, num_classes}, "mlp"));
  }
  if (name == "cnn") {
    if (input_dim != 28 * 28) {
      return InvalidArgumentError("model 'cnn' takes 28x28x1 images (input_dim 784), got input_dim " +
                                  std::to_string(input_dim));
    }
    CnnConfig cfg;
    cfg.num_classes = num_classes;
    return std::unique_ptr<Model>(new Cnn(cfg, "cnn"));
  }
  return InvalidArgumentError("unknown model '" + std::string(name) + "' (known: logreg, mlp, 2nn, cnn, or 'layers: ...' with a layer list)");
}

}  // namespace frugal
