// CLI11 front end of GRPOConfig for the apps (header-only so the library does not link CLI11).
// Registers --config <json>, repeatable --set key=value, and one flag per config field named like
// the JSON key and TRL / HfArgumentParser (--learning_rate 1e-6, --bf16, --bf16 false,
// --reward_funcs accuracy format). Precedence: defaults < --config file < --set < per-field flags.
// Usage:  GrpoCli cli; add_grpo_config_options(app, cli); CLI11_PARSE(app, argc, argv);
//         GRPOConfig cfg = resolve_grpo_config(cli);  cfg.validate(world_size);
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <utility>
#include <vector>

#include "medr1/rl/grpo_config.h"

namespace medr1::rl {

struct GrpoCli {
  std::string config_path;
  std::vector<std::string> sets;
  // One option per config field; its raw words are applied after the file is loaded.
  std::vector<std::pair<std::string, CLI::Option*>> field_options;
};

inline void add_grpo_config_options(CLI::App& app, GrpoCli& cli) {
  app.add_option("--config", cli.config_path, "run config JSON (configs/train/*.json)");
  app.add_option("--set", cli.sets, "override a config key: --set key=value (repeatable)");
  for (const ConfigFieldInfo& f : grpo_config_fields()) {
    // No bound variable: the words stay on the option and are applied after the file is loaded.
    CLI::Option* o = app.add_option("--" + f.key);
    o->description(f.help + " [" + f.type + ", default " + f.default_value + "]");
    if (f.type == "bool") {
      o->expected(0, 1);  // --bf16 alone means true; --bf16 false as HfArgumentParser allows
    } else if (f.type == "list_str" || f.type == "list_float") {
      // nargs="+": one or more words up to the next flag (an empty list: --set key=[])
      o->expected(1, CLI::detail::expected_max_vector_size)->allow_extra_args(true);
    } else {
      o->expected(1);
    }
    // A repeated scalar flag keeps its last value; a repeated list flag keeps all its words.
    if (f.type.rfind("list_", 0) != 0) o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    cli.field_options.emplace_back(f.key, o);
  }
}

// Defaults, then the --config file, then --set in order, then per-field flags.
inline GRPOConfig resolve_grpo_config(const GrpoCli& cli) {
  GRPOConfig c = cli.config_path.empty() ? GRPOConfig{} : load_grpo_config(cli.config_path);
  for (const auto& s : cli.sets) apply_set(c, s);
  for (const auto& [key, opt] : cli.field_options) {
    if (opt->count() == 0) continue;
    std::vector<std::string> words;
    for (const auto& w : opt->reduced_results())
      if (!w.empty()) words.push_back(w);
    apply_override(c, key, words);
  }
  return c;
}

}  // namespace medr1::rl
