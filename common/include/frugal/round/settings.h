// The configuration keys every front end reads the same way: `pipeline` and
// the [round], [train], [uplink], [downlink] and [server] tables. One reader,
// so the simulator and the coordinator can never disagree on a key's meaning.
#pragma once

#include <string>
#include <vector>

#include "frugal/core/config_reader.h"
#include "frugal/core/status.h"
#include "frugal/round/engine.h"

namespace frugal {

// Parses "ternary", "int8", "fp16" or "fp32".
Result<ValueCoding> ParseValueCoding(std::string_view name);

// Lays the table [pipelines.<name>] of the configured pipeline (`pipeline`, or
// `default_pipeline` when absent) over the rest of `t`, so a scenario can give
// one pipeline its own settings (e.g. Frugal's energy-aware selection) while
// `pipeline = "dense"` stays the plain FedAvg baseline; then re-applies
// `overrides`, so the command line still wins, and removes [pipelines].
// Errors name an unknown pipeline table or a [pipelines] entry that is not a table.
Status ApplyPipelineTable(toml::table& t, Pipeline default_pipeline, const std::vector<std::string>& overrides);

// Reads pipeline, round.{clients_per_round,over_selection,deadline_s,min_quorum,selection},
// train.*, uplink.{density,values,exact_topk,try_zstd},
// downlink.{bits,block_size,broadcast_density,broadcast_values,delta_window} and
// server.{learning_rate,momentum,averaging,release_ema} from `r`; the values passed in are the
// defaults. Applies the pipeline (dense: fp32 both ways) and validates. Errors
// name the key; a type error already recorded by `r` is returned first.
Status ReadRoundSettings(ConfigReader& r, Pipeline& pipeline, RoundPlan& plan, TaskConfig& task, EngineConfig& engine);

// Sentences for a run report saying how the server averages and which model
// its accuracy is of, when that differs from plain FedAvg; empty otherwise.
std::vector<std::string> ServerNotes(const EngineConfig& engine);

}  // namespace frugal
