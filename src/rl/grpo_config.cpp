// GRPOConfig: defaults, strict JSON reader, dump, string overrides and validate() (grpo_config.h).
// All of it is generic over GRPOConfig::visit_fields, so a new field is one line there.
#include "medr1/rl/grpo_config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include "medr1/core/error.h"
#include "medr1/core/logging.h"
#include "medr1/io/json_util.h"
#include "medr1/model/attention.h"
#include "medr1/rl/rewards.h"
#include "medr1/rl/train_logger.h"

namespace medr1::rl {
namespace {

template <class T> struct is_vec : std::false_type {};
template <class T> struct is_vec<std::vector<T>> : std::true_type {};

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, std::string>) return "string";
  else if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (std::is_same_v<T, int64_t>) return "int";
  else if constexpr (std::is_same_v<T, double>) return "float";
  else if constexpr (std::is_same_v<T, std::optional<double>>) return "optional_float";
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "list_str";
  else if constexpr (std::is_same_v<T, std::vector<double>>) return "list_float";
  else static_assert(sizeof(T) == 0, "GRPOConfig: unsupported field type");
}

template <class T>
nlohmann::json value_to_json(const T& v) {
  if constexpr (std::is_same_v<T, std::optional<double>>) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  } else {
    return nlohmann::json(v);
  }
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return s;
}

// Strict number parsing: the whole word must be consumed.
double parse_double(const std::string& key, const std::string& w) {
  const char* b = w.c_str();
  char* e = nullptr;
  errno = 0;
  double d = std::strtod(b, &e);
  MEDR1_CHECK(!w.empty() && e == b + w.size() && errno != ERANGE, "--", key,
              ": expected a number, got \"", w, "\"");
  return d;
}

int64_t parse_int(const std::string& key, const std::string& w) {
  const char* b = w.c_str();
  char* e = nullptr;
  errno = 0;
  long long v = std::strtoll(b, &e, 10);
  MEDR1_CHECK(!w.empty() && e == b + w.size() && errno != ERANGE, "--", key,
              ": expected an integer, got \"", w, "\"");
  return static_cast<int64_t>(v);
}

bool parse_bool(const std::string& key, const std::string& w) {
  // transformers' string_to_bool accepts these spellings.
  const std::string s = lower(w);
  if (s == "true" || s == "t" || s == "yes" || s == "y" || s == "1") return true;
  if (s == "false" || s == "f" || s == "no" || s == "n" || s == "0") return false;
  fail("--", key, ": expected true or false, got \"", w, "\"");
}

// List words: each may itself be comma-separated ("accuracy,format"); empty items are dropped.
std::vector<std::string> split_list(const std::vector<std::string>& words) {
  std::vector<std::string> out;
  for (const auto& w : words) {
    std::stringstream ss(w);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) out.push_back(item);
  }
  return out;
}

template <class T>
void set_from_words(T& f, const std::string& key, const std::vector<std::string>& words) {
  if constexpr (std::is_same_v<T, bool>) {
    MEDR1_CHECK(words.size() <= 1, "--", key, ": expected at most one value");
    f = words.empty() || parse_bool(key, words[0]);
  } else if constexpr (is_vec<T>::value) {
    // One JSON array word ("[1, 0.5]") or plain words.
    if (words.size() == 1 && !words[0].empty() && words[0].front() == '[') {
      f = io::json_as<T>(io::parse_json(words[0], "--" + key), io::JsonCtx{"--" + key}, key);
      return;
    }
    T out;
    for (const auto& w : split_list(words)) {
      if constexpr (std::is_same_v<typename T::value_type, double>) out.push_back(parse_double(key, w));
      else out.push_back(w);
    }
    f = std::move(out);
  } else {
    MEDR1_CHECK(words.size() == 1, "--", key, ": expected exactly one value, got ", words.size());
    const std::string& w = words[0];
    if constexpr (std::is_same_v<T, std::string>) f = w;
    else if constexpr (std::is_same_v<T, int64_t>) f = parse_int(key, w);
    else if constexpr (std::is_same_v<T, double>) f = parse_double(key, w);
    else if constexpr (std::is_same_v<T, std::optional<double>>) {
      const std::string s = lower(w);
      if (s == "none" || s == "null" || s.empty()) f = std::nullopt;
      else f = parse_double(key, w);
    } else {
      static_assert(sizeof(T) == 0, "GRPOConfig: unsupported field type");
    }
  }
}

void check_one_of(const std::string& key, const std::string& v,
                  std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  fail("config: ", key, ": expected one of ", list, ", got \"", v, "\"");
}

}  // namespace

GRPOConfig::GRPOConfig() {
  visit([](auto& f, const char*, const auto& def, const char*) { f = def; });
}

std::vector<ConfigFieldInfo> grpo_config_fields() {
  std::vector<ConfigFieldInfo> out;
  GRPOConfig c;
  c.visit([&](const auto& f, const char* key, const auto& def, const char* help) {
    using T = std::decay_t<decltype(f)>;
    out.push_back({key, type_name<T>(), value_to_json(T(def)).dump(), help});
  });
  return out;
}

GRPOConfig grpo_config_from_json(const nlohmann::json& j, const std::string& file) {
  const io::JsonCtx ctx{file};
  MEDR1_CHECK(j.is_object(), file, ": expected a JSON object, got ", io::json_type_name(j));
  GRPOConfig c;
  std::set<std::string> known;
  c.visit([&](auto& f, const char* key, const auto&, const char*) {
    using T = std::decay_t<decltype(f)>;
    known.insert(key);
    auto it = j.find(key);
    if (it == j.end()) return;
    if constexpr (std::is_same_v<T, std::optional<double>>) {
      f = it->is_null() ? std::nullopt : std::optional<double>(io::json_as<double>(*it, ctx, key));
    } else {
      f = io::json_as<T>(*it, ctx, key);
    }
  });
  // Run configs are complete presets: an unknown key is almost always a typo.
  for (const auto& [key, value] : j.items())
    MEDR1_CHECK(known.count(key) != 0, ctx.where(key), ": unknown key");
  return c;
}

GRPOConfig load_grpo_config(const std::string& path) {
  return grpo_config_from_json(io::read_json_file(path), path);
}

nlohmann::json to_json(const GRPOConfig& c) {
  // ordered_json would keep visit order; nlohmann::json sorts keys, which diff tools like too.
  nlohmann::json j = nlohmann::json::object();
  c.visit([&](const auto& f, const char* key, const auto&, const char*) { j[key] = value_to_json(f); });
  return j;
}

void save_grpo_config(const GRPOConfig& c, const std::string& path) {
  std::ofstream os(path, std::ios::binary | std::ios::trunc);
  MEDR1_CHECK(os.good(), path, ": cannot open for writing (", std::strerror(errno), ")");
  os << to_json(c).dump(2) << '\n';
  os.close();
  MEDR1_CHECK(!os.fail(), path, ": write failed");
}

void apply_override(GRPOConfig& c, const std::string& key, const std::vector<std::string>& words) {
  bool found = false;
  c.visit([&](auto& f, const char* k, const auto&, const char*) {
    if (key != k) return;
    found = true;
    set_from_words(f, key, words);
  });
  MEDR1_CHECK(found, "--", key, ": unknown config key");
}

void apply_set(GRPOConfig& c, const std::string& key_eq_value) {
  const auto eq = key_eq_value.find('=');
  MEDR1_CHECK(eq != std::string::npos && eq > 0, "--set: expected key=value, got \"", key_eq_value,
              "\"");
  apply_override(c, key_eq_value.substr(0, eq), {key_eq_value.substr(eq + 1)});
}

void GRPOConfig::validate(int64_t world_size, int64_t max_position_embeddings) const {
  auto req = [](bool ok, auto&&... msg) { MEDR1_CHECK(ok, "config: ", msg...); };
  req(!output_dir.empty(), "output_dir: required");
  req(!model_name_or_path.empty(), "model_name_or_path: required");
  check_one_of("algo", algo, {"grpo", "sft"});
  check_one_of("prompt_template", prompt_template, {"think", "nothink"});
  check_one_of("optim", optim, {"adamw_torch", "adamw_torch_fused"});
  check_one_of("lr_scheduler_type", lr_scheduler_type,
               {"linear", "constant", "constant_with_warmup", "cosine"});
  check_one_of("loss_type", loss_type, {"grpo", "bnpo", "dr_grpo", "dapo"});
  check_one_of("scale_rewards", scale_rewards, {"group", "batch", "none"});
  check_one_of("importance_sampling_level", importance_sampling_level, {"token", "sequence"});
  check_one_of("dynamic_sampling", dynamic_sampling, {"none", "drop", "refill"});
  req(max_num_gen_batches >= 0, "max_num_gen_batches: must be >= 0 (0 = no limit), got ", max_num_gen_batches);
  if (dynamic_sampling != "none") {
    req(algo == "grpo", "dynamic_sampling ", dynamic_sampling, ": needs algo grpo (SFT has no reward groups)");
    req(num_generations >= 2, "dynamic_sampling ", dynamic_sampling,
        ": needs num_generations >= 2 (a group of one has no reward spread), got ", num_generations);
    // Ranks may keep different numbers of micro-batches, and top_entropy_quantile gathers once per
    // micro-batch: the collectives would not pair up.
    req(world_size == 1 || top_entropy_quantile >= 1.0, "dynamic_sampling ", dynamic_sampling,
        " with top_entropy_quantile < 1 runs on one process only (got ", world_size, " ranks)");
  }

  if (use_peft) {
    req(lora_r >= 1 && lora_r <= 65536, "lora_r: must be in [1, 65536], got ", lora_r);
    req(std::isfinite(lora_alpha) && lora_alpha > 0, "lora_alpha: must be > 0, got ", lora_alpha);
    req(std::isfinite(lora_dropout) && lora_dropout >= 0 && lora_dropout < 1,
        "lora_dropout: must be in [0, 1), got ", lora_dropout);
    req(!freeze_language_model,
        "use_peft and freeze_language_model: LoRA adapts the language model, which would then be frozen");
    req(!sync_ref_model, "use_peft and sync_ref_model: with LoRA the reference is the base model with the "
                         "adapters off, which TR-DPO mixing cannot move (TRL refuses it too)");
  }
  req(!(freeze_vision_modules && freeze_language_model),
      "freeze_vision_modules and freeze_language_model: at most one may be true (else nothing trains)");
  req(std::isfinite(learning_rate) && learning_rate >= 0, "learning_rate: must be >= 0, got ",
      learning_rate);
  req(adam_beta1 >= 0 && adam_beta1 < 1, "adam_beta1: must be in [0, 1), got ", adam_beta1);
  req(adam_beta2 >= 0 && adam_beta2 < 1, "adam_beta2: must be in [0, 1), got ", adam_beta2);
  req(adam_epsilon > 0, "adam_epsilon: must be > 0, got ", adam_epsilon);
  req(weight_decay >= 0, "weight_decay: must be >= 0, got ", weight_decay);
  req(max_grad_norm >= 0, "max_grad_norm: must be >= 0 (0 = no clipping), got ", max_grad_norm);
  req(warmup_steps >= 0, "warmup_steps: must be >= 0, got ", warmup_steps);
  req(warmup_ratio >= 0 && warmup_ratio <= 1, "warmup_ratio: must be in [0, 1], got ",
      warmup_ratio);

  req(world_size >= 1, "world_size must be >= 1, got ", world_size);
  req(per_device_train_batch_size >= 1, "per_device_train_batch_size: must be >= 1, got ",
      per_device_train_batch_size);
  req(gradient_accumulation_steps >= 1, "gradient_accumulation_steps: must be >= 1, got ",
      gradient_accumulation_steps);
  if (algo == "grpo") {
    // The group std needs two samples (TRL refuses num_generations < 2 for training too).
    req(num_generations >= 2, "num_generations: GRPO needs >= 2 completions per prompt, got ",
        num_generations);
    req(global_completion_batch(world_size) % num_generations == 0,
        "global batch (world_size ", world_size, " x per_device_train_batch_size ",
        per_device_train_batch_size, " x gradient_accumulation_steps ",
        gradient_accumulation_steps, " x num_generations ", num_generations,
        ") must be divisible by num_generations");
  }
  {
    bool ok = device == "cpu" || device == "cuda";
    if (!ok && device.rfind("cuda:", 0) == 0 && device.size() > 5)
      ok = device.find_first_not_of("0123456789", 5) == std::string::npos && device.size() <= 8;
    req(ok, "device: expected cpu, cuda or cuda:N, got '", device, "'");
    try {
      model::parse_attn_implementation(attn_implementation);  // the one list of accepted names
    } catch (const Error& e) {
      req(false, e.what());
    }
  }
  req(max_prompt_length >= 1, "max_prompt_length: must be >= 1, got ", max_prompt_length);
  req(max_completion_length >= 1, "max_completion_length: must be >= 1, got ",
      max_completion_length);
  req(max_prompt_length + max_completion_length <= max_position_embeddings,
      "max_prompt_length + max_completion_length = ", max_prompt_length + max_completion_length,
      " exceeds the model's max_position_embeddings ", max_position_embeddings);
  req(max_steps > 0 || num_train_epochs > 0,
      "num_train_epochs: must be > 0 when max_steps <= 0, got ", num_train_epochs);
  req(save_steps >= 1, "save_steps: must be >= 1, got ", save_steps);
  req(logging_steps >= 1, "logging_steps: must be >= 1, got ", logging_steps);
  try {
    parse_report_to(report_to);  // the one list of accepted integrations
  } catch (const Error& e) {
    req(false, e.what());
  }
  req(num_completions_to_print >= 0, "num_completions_to_print: must be >= 0 (0 = all), got ",
      num_completions_to_print);
  req(min_pixels >= 1 && min_pixels <= max_pixels, "min_pixels ", min_pixels,
      " must be in [1, max_pixels ", max_pixels, "]");

  req(temperature > 0, "temperature: must be > 0, got ", temperature);
  req(top_k >= 0, "top_k: must be >= 0, got ", top_k);
  req(top_p > 0 && top_p <= 1, "top_p: must be in (0, 1], got ", top_p);
  req(repetition_penalty > 0, "repetition_penalty: must be > 0, got ", repetition_penalty);

  req(beta >= 0, "beta: must be >= 0, got ", beta);
  req(epsilon >= 0 && epsilon < 1, "epsilon: must be in [0, 1), got ", epsilon);
  req(resolved_epsilon_high() >= 0, "epsilon_high: must be >= 0, got ", resolved_epsilon_high());
  req(num_iterations >= 1, "num_iterations: must be >= 1, got ", num_iterations);
  if (delta) {
    // TRL accepts any float and only recommends > 1 + epsilon_high; a cap <= 1 would clamp the
    // on-policy ratio itself, so it is refused here.
    req(std::isfinite(*delta) && *delta > 1, "delta: must be > 1 (or null), got ", *delta);
    if (*delta <= 1 + resolved_epsilon_high())
      spdlog::warn(
          "config: delta {} <= 1 + epsilon_high {}: TRL recommends delta > 1 + epsilon_high",
          *delta, 1 + resolved_epsilon_high());
  }
  req(std::isfinite(top_entropy_quantile) && top_entropy_quantile >= 0 && top_entropy_quantile <= 1,
      "top_entropy_quantile: must be in [0, 1] (1 = every token), got ", top_entropy_quantile);
  req(std::isfinite(ref_model_mixup_alpha) && ref_model_mixup_alpha >= 0 && ref_model_mixup_alpha <= 1,
      "ref_model_mixup_alpha: must be in [0, 1], got ", ref_model_mixup_alpha);
  req(ref_model_sync_steps >= 1, "ref_model_sync_steps: must be >= 1, got ", ref_model_sync_steps);
  if (sync_ref_model && beta == 0.0)
    spdlog::warn("config: sync_ref_model has no effect with beta 0 (no reference model; TRL likewise)");
  if (importance_sampling_level == "sequence" && loss_type != "grpo")
    spdlog::warn(
        "config: importance_sampling_level sequence with loss_type {} sums per-token terms, which "
        "weights each sequence by its length; GSPO's setup is loss_type grpo (TRL warns likewise)",
        loss_type);

  if (algo == "grpo") {
    req(!reward_funcs.empty(), "reward_funcs: at least one reward function is required");
    for (const auto& r : reward_funcs)
      req(default_registry().contains(r), "reward_funcs: unknown reward function '", r, "'");
  }
  if (std::find(reward_funcs.begin(), reward_funcs.end(), "soft_overlong_punishment") != reward_funcs.end()) {
    const int64_t lmax = resolved_soft_punish_max_completion_len();
    req(soft_punish_max_completion_len >= 0, "soft_punish_max_completion_len: must be >= 0, got ",
        soft_punish_max_completion_len);
    req(soft_punish_cache >= 0 && soft_punish_cache <= lmax, "soft_punish_cache: must be in [0, ", lmax,
        "] (the L_max of soft_overlong_punishment), got ", soft_punish_cache);
  }
  req(reward_weights.empty() || reward_weights.size() == reward_funcs.size(), "reward_weights: ",
      reward_weights.size(), " weights for ", reward_funcs.size(), " reward_funcs");
}

}  // namespace medr1::rl
