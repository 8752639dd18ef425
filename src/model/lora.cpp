// LoRA adapters with PEFT's semantics and files (see model/lora.h).
#include "medr1/model/lora.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "medr1/core/error.h"
#include "medr1/io/checkpoint.h"
#include "medr1/io/json_util.h"
#include "medr1/io/peft_adapter.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/qwen2_text.h"
#include "medr1/model/qwen2_vl.h"
#include "medr1/ops/gemm.h"

namespace fs = std::filesystem;

namespace medr1::model {

namespace {
using io::kPeftAdapterConfig;
using io::kPeftAdapterWeights;
using io::peft_key;

bool is_attention_projection(const std::string& n) {
  return n == "q_proj" || n == "k_proj" || n == "v_proj" || n == "o_proj";
}

// The adapted Linear and the adapter slot of `name` in decoder layer `layer`.
std::pair<torch::nn::Linear, LoraAdapterPtr*> projection(Qwen2VLDecoderLayerImpl& layer, const std::string& name) {
  Qwen2VLAttentionImpl& a = *layer.self_attn;
  Qwen2MLPImpl& m = *layer.mlp;
  if (name == "q_proj") return {a.q_proj, &a.q_proj_lora};
  if (name == "k_proj") return {a.k_proj, &a.k_proj_lora};
  if (name == "v_proj") return {a.v_proj, &a.v_proj_lora};
  if (name == "o_proj") return {a.o_proj, &a.o_proj_lora};
  if (name == "gate_proj") return {m.gate_proj, &m.gate_proj_lora};
  if (name == "up_proj") return {m.up_proj, &m.up_proj_lora};
  if (name == "down_proj") return {m.down_proj, &m.down_proj_lora};
  fail("LoRA: no projection '", name, "'");
}

Qwen2VLDecoderLayerImpl& decoder_layer(Qwen2VLForConditionalGenerationImpl& m, size_t l) {
  return *m.model->layers[l]->as<Qwen2VLDecoderLayerImpl>();
}

std::string module_name(size_t layer, const std::string& proj) {
  return "model.layers." + std::to_string(layer) + (is_attention_projection(proj) ? ".self_attn." : ".mlp.") + proj;
}
}  // namespace

double LoraConfig::scaling() const {
  return use_rslora ? lora_alpha / std::sqrt(static_cast<double>(r)) : lora_alpha / static_cast<double>(r);
}

const std::vector<std::string>& lora_projection_names() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

std::vector<std::string> resolve_lora_targets(const LoraConfig& cfg) {
  MEDR1_CHECK(cfg.r >= 1 && cfg.r <= 65536, "lora_r: must be in [1, 65536], got ", cfg.r);
  MEDR1_CHECK(std::isfinite(cfg.lora_alpha) && cfg.lora_alpha > 0, "lora_alpha: must be > 0, got ", cfg.lora_alpha);
  MEDR1_CHECK(std::isfinite(cfg.lora_dropout) && cfg.lora_dropout >= 0 && cfg.lora_dropout < 1,
              "lora_dropout: must be in [0, 1), got ", cfg.lora_dropout);
  const std::vector<std::string>& all = lora_projection_names();
  if (cfg.target_modules.empty()) return all;
  std::set<std::string> want;
  for (const std::string& t : cfg.target_modules) {
    if (t == "all-linear") {
      want.insert(all.begin(), all.end());
      continue;
    }
    MEDR1_CHECK(std::find(all.begin(), all.end(), t) != all.end(), "lora_target_modules: '", t,
                "' is not a projection of the language model; expected some of q_proj k_proj v_proj o_proj "
                "gate_proj up_proj down_proj, or all-linear (the vision tower is not adapted)");
    want.insert(t);
  }
  std::vector<std::string> out;
  for (const std::string& n : all)
    if (want.count(n)) out.push_back(n);
  return out;
}

at::Tensor LoraAdapter::apply(const at::Tensor& y, const at::Tensor& x) const {
  if (!*enabled) return y;
  const at::Tensor& wa = lora_A->weight;
  at::Tensor h = x.scalar_type() == wa.scalar_type() ? x : x.to(wa.scalar_type());
  if (dropout > 0 && lora_A->is_training()) h = at::dropout(h, dropout, /*train=*/true);
  at::Tensor d = ops::gemm_linear(ops::gemm_linear(h, wa), lora_B->weight) * scaling;  // [.., r] -> [.., out]
  return y + (d.scalar_type() == y.scalar_type() ? d : d.to(y.scalar_type()));
}


bool is_lora_param(const std::string& n) {
  return n.find(".lora_A.") != std::string::npos || n.find(".lora_B.") != std::string::npos;
}

std::string lora_target_regex(const std::vector<std::string>& targets) {
  std::vector<std::string> attn, mlp;
  for (const std::string& t : targets) (is_attention_projection(t) ? attn : mlp).push_back(t);
  // Appends only (GCC 12's -Wstringop-overflow misfires on operator+ chains of literals and strings).
  auto alt = [](std::string& out, const std::vector<std::string>& v) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (i > 0) out.append("|");
      out.append(v[i]);
    }
  };
  std::string re = "model\\.layers\\.\\d+\\.(";
  if (!attn.empty()) {
    re.append("self_attn\\.(");
    alt(re, attn);
    re.append(")");
  }
  if (!mlp.empty()) {
    if (!attn.empty()) re.append("|");
    re.append("mlp\\.(");
    alt(re, mlp);
    re.append(")");
  }
  re.append(")");
  return re;
}

nlohmann::json LoraSet::peft_config(const std::string& base_model_name_or_path) const {
  // The fields of peft 0.14's LoraConfig that describe this adapter (defaults for the rest); PEFT reads it with
  // PeftModel.from_pretrained / PeftConfig.from_pretrained.
  nlohmann::json j;
  j["alpha_pattern"] = nlohmann::json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = base_model_name_or_path;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["loftq_config"] = nlohmann::json::object();
  j["lora_alpha"] = config.lora_alpha;
  j["lora_dropout"] = config.lora_dropout;
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] = nullptr;
  j["peft_type"] = "LORA";
  j["r"] = config.r;
  j["rank_pattern"] = nlohmann::json::object();
  j["revision"] = nullptr;
  j["target_modules"] = lora_target_regex(targets);
  j["task_type"] = "CAUSAL_LM";
  j["use_dora"] = false;
  j["use_rslora"] = config.use_rslora;
  return j;
}

void LoraSet::save(const std::string& dir, const std::string& base_model_name_or_path) const {
  std::vector<std::pair<std::string, at::Tensor>> t;
  for (const auto& [name, a] : adapters) {
    t.emplace_back(name + ".lora_A.weight", a->lora_A->weight);
    t.emplace_back(name + ".lora_B.weight", a->lora_B->weight);
  }
  io::write_peft_adapter(dir, t, peft_config(base_model_name_or_path));
}

void LoraSet::load_weights(const std::string& dir) {
  const std::string path = (fs::path(dir) / kPeftAdapterWeights).string();
  MEDR1_CHECK(fs::exists(path), dir, ": no ", kPeftAdapterWeights);
  std::map<std::string, at::Tensor> file = io::load_safetensors(path);
  // PEFT files drop the adapter name; accept ".default." too (older savers keep it).
  std::map<std::string, at::Tensor> t;
  for (auto& [k, v] : file) {
    std::string key = k;
    for (const char* ab : {".lora_A.default.", ".lora_B.default."}) {
      const auto pos = key.find(ab);
      if (pos != std::string::npos) key.replace(pos, std::string(ab).size(), std::string(ab).substr(0, 8));
    }
    MEDR1_CHECK(t.emplace(key, v).second, path, ": ", k, ": duplicate adapter tensor");
  }
  at::NoGradGuard ng;
  std::set<std::string> used;
  for (auto& [name, a] : adapters) {
    for (auto [suffix, lin] : {std::pair<const char*, torch::nn::Linear>{".lora_A.weight", a->lora_A},
                               std::pair<const char*, torch::nn::Linear>{".lora_B.weight", a->lora_B}}) {
      const std::string key = peft_key(name + suffix);
      auto it = t.find(key);
      MEDR1_CHECK(it != t.end(), path, ": ", key, ": missing (adapter_config.json targets ", name, ")");
      MEDR1_CHECK(it->second.sizes() == lin->weight.sizes(), path, ": ", key, ": shape ", it->second.sizes(),
                  " != ", lin->weight.sizes(), " (r ", config.r, ")");
      MEDR1_CHECK(at::isFloatingType(it->second.scalar_type()), path, ": ", key,
                  ": expected a floating-point tensor, got ", it->second.scalar_type());
      lin->weight.copy_(it->second);
      used.insert(key);
    }
  }
  for (const auto& [k, v] : t)
    MEDR1_CHECK(used.count(k), path, ": ", k, ": not an adapter of this model's targeted projections");
}

std::shared_ptr<LoraSet> inject_lora(Qwen2VLForConditionalGenerationImpl& m, const LoraConfig& cfg, uint64_t seed) {
  auto set = std::make_shared<LoraSet>();
  set->config = cfg;
  set->targets = resolve_lora_targets(cfg);
  auto gen = at::detail::createCPUGenerator(seed);
  at::NoGradGuard ng;
  for (size_t l = 0; l < m.model->layers->size(); ++l) {
    Qwen2VLDecoderLayerImpl& layer = decoder_layer(m, l);
    for (const std::string& proj : set->targets) {
      auto [base, slot] = projection(layer, proj);
      MEDR1_CHECK(*slot == nullptr, "LoRA: ", module_name(l, proj), " already has an adapter");
      const int64_t in = base->weight.size(1), out = base->weight.size(0);
      auto a = std::make_shared<LoraAdapter>();
      a->lora_A = torch::nn::Linear(torch::nn::LinearOptions(in, cfg.r).bias(false));
      a->lora_B = torch::nn::Linear(torch::nn::LinearOptions(cfg.r, out).bias(false));
      // PEFT reset_lora_parameters: kaiming_uniform_(A, a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0.
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      at::Tensor wa = at::empty({cfg.r, in}, at::kFloat).uniform_(-bound, bound, gen);
      a->lora_A->weight.set_data(wa.to(base->weight.options()));
      a->lora_B->weight.set_data(at::zeros({out, cfg.r}, base->weight.options()));
      a->scaling = cfg.scaling();
      a->dropout = cfg.lora_dropout;
      a->enabled = set->enabled;
      base->register_module("lora_A", a->lora_A);
      base->register_module("lora_B", a->lora_B);
      if (base->is_training()) {
        a->lora_A->train();
        a->lora_B->train();
      } else {
        a->lora_A->eval();
        a->lora_B->eval();
      }
      *slot = a;
      set->adapters.emplace_back(module_name(l, proj), a);
    }
  }
  return set;
}


std::pair<LoraConfig, std::string> read_lora_adapter_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / kPeftAdapterConfig).string();
  const nlohmann::json j = io::read_json_file(path);
  MEDR1_CHECK(j.is_object(), path, ": expected a JSON object");
  auto str_or = [&](const char* k, const std::string& def) {
    if (!j.contains(k) || j.at(k).is_null()) return def;
    MEDR1_CHECK(j.at(k).is_string(), path, ": ", k, ": expected a string, got ", j.at(k).dump());
    return j.at(k).get<std::string>();
  };
  auto num = [&](const char* k, double def) {
    if (!j.contains(k)) return def;
    MEDR1_CHECK(j.at(k).is_number(), path, ": ", k, ": expected a number, got ", j.at(k).dump());
    return j.at(k).get<double>();
  };
  auto flag = [&](const char* k) {
    if (!j.contains(k) || j.at(k).is_null()) return false;
    MEDR1_CHECK(j.at(k).is_boolean(), path, ": ", k, ": expected true or false, got ", j.at(k).dump());
    return j.at(k).get<bool>();
  };
  MEDR1_CHECK(str_or("peft_type", "") == "LORA", path, ": peft_type: expected \"LORA\", got ",
              j.value("peft_type", nlohmann::json()).dump());
  MEDR1_CHECK(!flag("use_dora"), path, ": use_dora: DoRA adapters are not supported");
  MEDR1_CHECK(!flag("fan_in_fan_out"), path, ": fan_in_fan_out: true is not supported (Conv1D models only)");
  MEDR1_CHECK(str_or("bias", "none") == "none", path, ": bias: only \"none\" is supported, got \"",
              str_or("bias", "none"), "\"");
  for (const char* k : {"modules_to_save", "layers_to_transform", "layer_replication"})
    MEDR1_CHECK(!j.contains(k) || j.at(k).is_null() || (j.at(k).is_array() && j.at(k).empty()), path, ": ", k,
                ": not supported (got ", j.at(k).dump(), ")");
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    MEDR1_CHECK(!j.contains(k) || j.at(k).is_null() || (j.at(k).is_object() && j.at(k).empty()), path, ": ", k,
                ": per-module ranks / alphas are not supported (got ", j.at(k).dump(), ")");
  LoraConfig c;
  const double r = num("r", 8);
  MEDR1_CHECK(r >= 1 && r <= 65536 && r == std::floor(r), path, ": r: expected a whole number in [1, 65536], got ", r);
  c.r = static_cast<int64_t>(r);
  c.lora_alpha = num("lora_alpha", 8);
  c.lora_dropout = num("lora_dropout", 0);
  c.use_rslora = flag("use_rslora");
  // target_modules: a list of names (PEFT: a module whose name ends with one of them) or a regex (full match
  // of the module name). Both are resolved against the decoder's module names, and must select whole
  // projection kinds of every layer (what this model can adapt).
  MEDR1_CHECK(j.contains("target_modules") && !j.at("target_modules").is_null(), path,
              ": target_modules: missing");
  const nlohmann::json& tm = j.at("target_modules");
  std::vector<std::string> names;
  if (tm.is_array()) {
    for (const auto& v : tm) {
      MEDR1_CHECK(v.is_string(), path, ": target_modules: expected strings, got ", v.dump());
      names.push_back(v.get<std::string>());
    }
    for (const std::string& n : names)
      MEDR1_CHECK(n == "all-linear" || std::find(lora_projection_names().begin(), lora_projection_names().end(),
                                                 n) != lora_projection_names().end(),
                  path, ": target_modules: '", n,
                  "' is not a decoder projection (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)");
  } else {
    MEDR1_CHECK(tm.is_string(), path, ": target_modules: expected a list or a regex string, got ", tm.dump());
    std::regex re;
    try {
      re = std::regex(tm.get<std::string>());
    } catch (const std::regex_error& e) {
      fail(path, ": target_modules: not a valid regex: ", e.what());
    }
    if (tm.get<std::string>() == "all-linear") names = {"all-linear"};
    for (const std::string& p : lora_projection_names()) {
      const bool first = std::regex_match(module_name(0, p), re), other = std::regex_match(module_name(1, p), re);
      MEDR1_CHECK(first == other, path, ": target_modules: the regex selects ", p,
                  " in some decoder layers only (not supported)");
      if (first) names.push_back(p);
    }
    MEDR1_CHECK(!names.empty(), path, ": target_modules: the regex '", tm.get<std::string>(),
                "' selects none of the decoder projections (model.layers.N.self_attn.q_proj, ...)");
  }
  c.target_modules = names;
  try {
    resolve_lora_targets(c);
  } catch (const std::exception& e) {
    fail(path, ": ", e.what());
  }
  return {c, str_or("base_model_name_or_path", "")};
}

std::shared_ptr<LoraSet> load_lora_adapter(Qwen2VLForConditionalGenerationImpl& m, const std::string& dir) {
  auto set = inject_lora(m, read_lora_adapter_config(dir).first, /*seed=*/0);
  set->load_weights(dir);
  return set;
}

void merge_and_unload(Qwen2VLForConditionalGenerationImpl& m, LoraSet& set) {
  at::NoGradGuard ng;
  for (size_t l = 0; l < m.model->layers->size(); ++l) {
    Qwen2VLDecoderLayerImpl& layer = decoder_layer(m, l);
    for (const std::string& proj : set.targets) {
      auto [base, slot] = projection(layer, proj);
      if (!*slot) continue;
      const LoraAdapter& a = **slot;
      // PEFT get_delta_weight: (B @ A) * scaling, in fp32 for half types on CPU; added in the weight's dtype.
      at::Tensor delta = at::matmul(a.lora_B->weight.to(at::kFloat), a.lora_A->weight.to(at::kFloat)) * a.scaling;
      base->weight.add_(delta.to(base->weight.scalar_type()));
      base->unregister_module("lora_A");
      base->unregister_module("lora_B");
      *slot = nullptr;
    }
  }
  set.adapters.clear();
}

}  // namespace medr1::model
