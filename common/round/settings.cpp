#include "frugal/round/settings.h"

#include <cstdio>
#include <string>
#include <vector>

namespace frugal {

Result<ValueCoding> ParseValueCoding(std::string_view name) {
  if (name == "ternary") return ValueCoding::kTernary;
  if (name == "int8") return ValueCoding::kInt8;
  if (name == "fp16") return ValueCoding::kFp16;
  if (name == "fp32") return ValueCoding::kFp32;
  return InvalidArgumentError("unknown value coding '" + std::string(name) + "' (ternary, int8, fp16, fp32)");
}

namespace {

// Copies every key of `src` into `dst`, merging tables key by key.
void MergeTable(toml::table& dst, const toml::table& src) {
  for (auto&& [key, node] : src) {
    if (const toml::table* sub = node.as_table()) {
      if (toml::table* into = dst[key].as_table()) {
        MergeTable(*into, *sub);
        continue;
      }
    }
    dst.insert_or_assign(key, node);
  }
}

}  // namespace

Status ApplyPipelineTable(toml::table& t, Pipeline default_pipeline, const std::vector<std::string>& overrides) {
  const toml::node* tables = t.get("pipelines");
  if (tables == nullptr) return OkStatus();
  if (!tables->is_table()) return InvalidArgumentError("configuration key 'pipelines' must be a table");
  for (auto&& [name, node] : *tables->as_table()) {
    const std::string id(name.str());
    if (auto known = ParsePipeline(id); !known.ok()) return known.error().WithContext("table [pipelines." + id + "]");
    if (!node.is_table()) return InvalidArgumentError("configuration key 'pipelines." + id + "' must be a table");
  }
  std::string pipeline(PipelineName(default_pipeline));
  if (const toml::node* p = t.get("pipeline")) {
    if (auto v = p->value_exact<std::string>()) pipeline = *v;
  }
  // Copied out first: merging may replace nodes of `t`.
  const toml::table* chosen = tables->as_table()->get_as<toml::table>(pipeline);
  const toml::table overlay = chosen != nullptr ? *chosen : toml::table{};
  t.erase("pipelines");
  MergeTable(t, overlay);
  for (const std::string& o : overrides) FRUGAL_RETURN_IF_ERROR(ApplyOverride(t, o));
  return OkStatus();
}

Status ReadRoundSettings(ConfigReader& r, Pipeline& pipeline, RoundPlan& plan, TaskConfig& task, EngineConfig& engine) {
  std::string pipeline_name(PipelineName(pipeline));
  std::string values = "ternary", broadcast_values = "ternary";
  std::string selection(SelectionPolicyName(plan.selection));
  std::string averaging(AveragingName(engine.averaging));
  r.Get("pipeline", pipeline_name);
  r.Get("round.clients_per_round", plan.clients_per_round);
  r.Get("round.over_selection", plan.over_selection);
  r.Get("round.deadline_s", plan.deadline_s);
  r.Get("round.min_quorum", plan.min_quorum);
  r.Get("round.selection", selection);

  r.Get("train.epochs", task.train.epochs);
  r.Get("train.batch_size", task.train.batch_size);
  r.Get("train.learning_rate", task.train.learning_rate);
  r.Get("train.momentum", task.train.momentum);
  r.Get("train.prox_mu", task.train.prox_mu);
  r.Get("train.weight_decay", task.train.weight_decay);

  r.Get("uplink.density", task.uplink.density);
  r.Get("uplink.values", values);
  r.Get("uplink.exact_topk", task.uplink.exact_topk);
  r.Get("uplink.try_zstd", task.uplink.try_zstd);

  r.Get("downlink.bits", engine.full_model.bits);
  r.Get("downlink.block_size", engine.full_model.block_size);
  r.Get("downlink.broadcast_density", engine.broadcast.density);
  r.Get("downlink.broadcast_values", broadcast_values);
  r.Get("downlink.delta_window", engine.delta_window);

  r.Get("server.learning_rate", engine.server_opt.learning_rate);
  r.Get("server.momentum", engine.server_opt.momentum);
  r.Get("server.averaging", averaging);
  r.Get("server.release_ema", engine.release_ema);
  if (r.error()) return *r.error();

  FRUGAL_ASSIGN_OR_RETURN(pipeline, ParsePipeline(pipeline_name));
  FRUGAL_ASSIGN_OR_RETURN(plan.selection, ParseSelectionPolicy(selection));
  FRUGAL_ASSIGN_OR_RETURN(task.uplink.values, ParseValueCoding(values));
  FRUGAL_ASSIGN_OR_RETURN(engine.broadcast.values, ParseValueCoding(broadcast_values));
  FRUGAL_ASSIGN_OR_RETURN(engine.averaging, ParseAveraging(averaging));
  engine.pipeline = pipeline;
  if (pipeline == Pipeline::kDense) {
    task.uplink.dense = true;
    engine.full_model.bits = 0;
  }
  if (plan.clients_per_round == 0) return InvalidArgumentError("round.clients_per_round must be at least 1");
  if (!(plan.deadline_s > 0)) return InvalidArgumentError("round.deadline_s must be positive");
  if (task.train.epochs < 1 || task.train.batch_size < 1) {
    return InvalidArgumentError("train.epochs and train.batch_size must be >= 1");
  }
  if (!(task.uplink.density > 0 && task.uplink.density <= 1)) return InvalidArgumentError("uplink.density must be in (0, 1]");
  if (!(engine.broadcast.density > 0 && engine.broadcast.density <= 1)) {
    return InvalidArgumentError("downlink.broadcast_density must be in (0, 1]");
  }
  if (!(engine.release_ema >= 0 && engine.release_ema < 1)) {
    return InvalidArgumentError("server.release_ema must be in [0, 1)");
  }
  return OkStatus();
}

std::vector<std::string> ServerNotes(const EngineConfig& engine) {
  std::vector<std::string> notes;
  if (engine.release_ema > 0) {
    char weight[32];
    std::snprintf(weight, sizeof weight, "%g", engine.release_ema);
    notes.push_back(std::string("The evaluated model is the released one: the moving average (weight ") + weight +
                    " on the past) of the server's model versions. Clients train from the model itself.");
  }
  if (engine.averaging == Averaging::kSupport) {
    notes.push_back("Each coordinate of the aggregate is divided by the weights of the updates that carry it "
                    "(support averaging), not by all of them.");
  }
  return notes;
}

}  // namespace frugal
