// Qwen2-VL / Qwen2.5-VL config.json and generation_config.json parsing (transformers v4.49.0 defaults).
#include "medr1/model/qwen2_vl_config.h"

#include <filesystem>
#include <numeric>

#include "medr1/core/error.h"
#include "medr1/io/json_util.h"
#include "medr1/model/qwen2_vision.h"

namespace medr1::model {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// An id field that HF allows as int or list of ints (bos/eos); null/absent -> empty.
std::vector<int64_t> get_id_list(const json& j, std::string_view key, const io::JsonCtx& ctx) {
  if (!io::has(j, key)) return {};
  const json& v = j.at(std::string(key));
  if (v.is_array()) return io::json_as<std::vector<int64_t>>(v, ctx, key);
  return {io::json_as<int64_t>(v, ctx, key)};
}

json id_list_to_json(const std::vector<int64_t>& ids) {
  if (ids.empty()) return nullptr;
  if (ids.size() == 1) return ids[0];
  return ids;
}

std::string file_in(const std::string& path, const char* name) {
  if (fs::is_directory(path)) return (fs::path(path) / name).string();
  return path;
}

}  // namespace

const char* model_type_name(QwenVLVersion v) {
  return v == QwenVLVersion::Qwen2_5VL ? "qwen2_5_vl" : "qwen2_vl";
}

Qwen2VLConfig parse_qwen2_vl_config(const json& j, const std::string& file) {
  io::JsonCtx ctx{file, ""};
  Qwen2VLConfig c;
  c.raw = j;
  c.architectures = io::get_or<std::vector<std::string>>(j, "architectures", ctx, {});
  c.model_type = io::get_or<std::string>(j, "model_type", ctx, "");
  // The version is decided by the file's declared type, not by where it lives.
  if (c.model_type == "qwen2_5_vl") {
    c.version = QwenVLVersion::Qwen2_5VL;
  } else if (c.model_type == "qwen2_vl") {
    c.version = QwenVLVersion::Qwen2VL;
  } else {
    bool found = false;
    for (const auto& a : c.architectures) {
      if (a.rfind("Qwen2_5_VL", 0) == 0) { c.version = QwenVLVersion::Qwen2_5VL; found = true; break; }
      if (a.rfind("Qwen2VL", 0) == 0) { c.version = QwenVLVersion::Qwen2VL; found = true; break; }
    }
    MEDR1_CHECK(found, ctx.where("model_type"), ": expected \"qwen2_vl\" or \"qwen2_5_vl\" (or architectures "
                "Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration), got \"", c.model_type, "\"");
    c.model_type = model_type_name(c.version);
  }

  c.vocab_size = io::get_or<int64_t>(j, "vocab_size", ctx, c.vocab_size);
  c.hidden_size = io::get_or<int64_t>(j, "hidden_size", ctx, c.hidden_size);
  c.intermediate_size = io::get_or<int64_t>(j, "intermediate_size", ctx, c.intermediate_size);
  c.num_hidden_layers = io::get_or<int64_t>(j, "num_hidden_layers", ctx, c.num_hidden_layers);
  c.num_attention_heads = io::get_or<int64_t>(j, "num_attention_heads", ctx, c.num_attention_heads);
  c.num_key_value_heads = io::get_or<int64_t>(j, "num_key_value_heads", ctx, c.num_attention_heads);
  c.rms_norm_eps = io::get_or<double>(j, "rms_norm_eps", ctx, c.rms_norm_eps);
  c.rope_theta = io::get_or<double>(j, "rope_theta", ctx, c.rope_theta);
  c.max_position_embeddings = io::get_or<int64_t>(j, "max_position_embeddings", ctx, c.max_position_embeddings);
  c.tie_word_embeddings = io::get_or<bool>(j, "tie_word_embeddings", ctx, c.tie_word_embeddings);
  c.torch_dtype = io::get_or<std::string>(j, "torch_dtype", ctx, c.torch_dtype);
  c.hidden_act = io::get_or<std::string>(j, "hidden_act", ctx, c.hidden_act);

  MEDR1_CHECK(c.vocab_size > 0, ctx.where("vocab_size"), ": must be > 0, got ", c.vocab_size);
  MEDR1_CHECK(c.hidden_size > 0, ctx.where("hidden_size"), ": must be > 0, got ", c.hidden_size);
  MEDR1_CHECK(c.intermediate_size > 0, ctx.where("intermediate_size"), ": must be > 0");
  MEDR1_CHECK(c.num_hidden_layers > 0, ctx.where("num_hidden_layers"), ": must be > 0");
  MEDR1_CHECK(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0,
              ctx.where("num_attention_heads"), ": must divide hidden_size ", c.hidden_size, ", got ",
              c.num_attention_heads);
  MEDR1_CHECK(c.num_key_value_heads > 0 && c.num_attention_heads % c.num_key_value_heads == 0,
              ctx.where("num_key_value_heads"), ": must divide num_attention_heads ", c.num_attention_heads,
              ", got ", c.num_key_value_heads);
  MEDR1_CHECK(c.head_dim() % 2 == 0, ctx.where("hidden_size"), ": head_dim ", c.head_dim(), " must be even");
  MEDR1_CHECK(c.torch_dtype == "float32" || c.torch_dtype == "bfloat16" || c.torch_dtype == "float16",
              ctx.where("torch_dtype"), ": expected float32, bfloat16 or float16, got \"", c.torch_dtype, "\"");
  MEDR1_CHECK(c.hidden_act == "silu", ctx.where("hidden_act"), ": only \"silu\" is supported, got \"",
              c.hidden_act, "\"");

  const json& rs = io::get_object(j, "rope_scaling", ctx);
  io::JsonCtx rctx = ctx.at("rope_scaling");
  if (io::has(rs, "rope_type")) {
    c.rope_type = io::get<std::string>(rs, "rope_type", rctx);
  } else {
    c.rope_type = io::get_or<std::string>(rs, "type", rctx, "default");
  }
  MEDR1_CHECK(c.rope_type == "mrope" || c.rope_type == "default", rctx.where("type"),
              ": expected \"mrope\" or \"default\", got \"", c.rope_type, "\"");
  c.mrope_section = io::get<std::vector<int64_t>>(rs, "mrope_section", rctx);
  MEDR1_CHECK(c.mrope_section.size() == 3, rctx.where("mrope_section"), ": expected 3 entries (t, h, w), got ",
              c.mrope_section.size());
  int64_t msum = std::accumulate(c.mrope_section.begin(), c.mrope_section.end(), int64_t{0});
  MEDR1_CHECK(msum * 2 == c.head_dim(), rctx.where("mrope_section"), ": sum*2 must equal head_dim ", c.head_dim(),
              ", got sum ", msum);

  c.image_token_id = io::get_or<int64_t>(j, "image_token_id", ctx, c.image_token_id);
  c.video_token_id = io::get_or<int64_t>(j, "video_token_id", ctx, c.video_token_id);
  c.vision_start_token_id = io::get_or<int64_t>(j, "vision_start_token_id", ctx, c.vision_start_token_id);
  c.vision_end_token_id = io::get_or<int64_t>(j, "vision_end_token_id", ctx, c.vision_end_token_id);
  c.vision_token_id = io::get_or<int64_t>(j, "vision_token_id", ctx, c.vision_token_id);
  c.bos_token_id = get_id_list(j, "bos_token_id", ctx);
  c.eos_token_id = get_id_list(j, "eos_token_id", ctx);
  c.pad_token_id = io::get_or<std::optional<int64_t>>(j, "pad_token_id", ctx, std::nullopt);

  c.vision_config = io::get_object(j, "vision_config", ctx);
  // Validate now so a bad vision field fails at load time with its dotted path.
  (void)parse_vision_config(c.vision_config, c.version == QwenVLVersion::Qwen2_5VL, file);
  return c;
}

Qwen2VLConfig load_qwen2_vl_config(const std::string& path) {
  std::string file = file_in(path, "config.json");
  return parse_qwen2_vl_config(io::read_json_file(file), file);
}

json to_json(const Qwen2VLConfig& c) {
  json j = c.raw.is_object() ? c.raw : json::object();
  j["model_type"] = c.model_type;
  if (!c.architectures.empty()) {
    j["architectures"] = c.architectures;
  } else {
    j["architectures"] = {c.version == QwenVLVersion::Qwen2_5VL ? "Qwen2_5_VLForConditionalGeneration"
                                                                 : "Qwen2VLForConditionalGeneration"};
  }
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  j["hidden_act"] = c.hidden_act;
  // transformers rewrites "mrope" to "default" internally; writing "type": "mrope" is what the hub files hold.
  j["rope_scaling"] = {{"type", c.rope_type == "default" ? "mrope" : c.rope_type}, {"mrope_section", c.mrope_section}};
  j["image_token_id"] = c.image_token_id;
  j["video_token_id"] = c.video_token_id;
  j["vision_start_token_id"] = c.vision_start_token_id;
  j["vision_end_token_id"] = c.vision_end_token_id;
  j["vision_token_id"] = c.vision_token_id;
  j["bos_token_id"] = id_list_to_json(c.bos_token_id);
  j["eos_token_id"] = id_list_to_json(c.eos_token_id);
  j["pad_token_id"] = c.pad_token_id ? json(*c.pad_token_id) : json(nullptr);
  j["vision_config"] = c.vision_config;
  return j;
}

GenerationConfig parse_generation_config(const json& j, const std::string& file) {
  io::JsonCtx ctx{file, ""};
  GenerationConfig g;
  g.raw = j;
  g.eos_token_id = get_id_list(j, "eos_token_id", ctx);
  g.pad_token_id = io::get_or<std::optional<int64_t>>(j, "pad_token_id", ctx, std::nullopt);
  g.bos_token_id = io::get_or<std::optional<int64_t>>(j, "bos_token_id", ctx, std::nullopt);
  g.do_sample = io::get_or<bool>(j, "do_sample", ctx, g.do_sample);
  g.temperature = io::get_or<double>(j, "temperature", ctx, g.temperature);
  g.top_k = io::get_or<int64_t>(j, "top_k", ctx, g.top_k);
  g.top_p = io::get_or<double>(j, "top_p", ctx, g.top_p);
  g.repetition_penalty = io::get_or<double>(j, "repetition_penalty", ctx, g.repetition_penalty);
  g.max_new_tokens = io::get_or<std::optional<int64_t>>(j, "max_new_tokens", ctx, std::nullopt);
  g.max_length = io::get_or<int64_t>(j, "max_length", ctx, g.max_length);
  MEDR1_CHECK(g.repetition_penalty > 0, ctx.where("repetition_penalty"), ": must be > 0, got ", g.repetition_penalty);
  MEDR1_CHECK(g.top_p > 0 && g.top_p <= 1, ctx.where("top_p"), ": must be in (0, 1], got ", g.top_p);
  MEDR1_CHECK(g.temperature >= 0, ctx.where("temperature"), ": must be >= 0, got ", g.temperature);
  return g;
}

GenerationConfig load_generation_config(const std::string& path) {
  std::string file = file_in(path, "generation_config.json");
  return parse_generation_config(io::read_json_file(file), file);
}

json to_json(const GenerationConfig& g) {
  json j = g.raw.is_object() ? g.raw : json::object();
  j["eos_token_id"] = id_list_to_json(g.eos_token_id);
  j["pad_token_id"] = g.pad_token_id ? json(*g.pad_token_id) : json(nullptr);
  j["bos_token_id"] = g.bos_token_id ? json(*g.bos_token_id) : json(nullptr);
  j["do_sample"] = g.do_sample;
  j["temperature"] = g.temperature;
  j["top_k"] = g.top_k;
  j["top_p"] = g.top_p;
  j["repetition_penalty"] = g.repetition_penalty;
  j["max_new_tokens"] = g.max_new_tokens ? json(*g.max_new_tokens) : json(nullptr);
  j["max_length"] = g.max_length;
  return j;
}

}  // namespace medr1::model
