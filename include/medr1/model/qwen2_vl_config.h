// Qwen2-VL / Qwen2.5-VL config.json and generation_config.json as plain structs, with the defaults of
// transformers v4.49.0 Qwen2VLConfig / Qwen2_5_VLConfig / GenerationConfig. The model version comes from
// model_type / architectures, never from the path. vision_config is kept as JSON here (validated at parse
// time by the vision tower's parse_vision_config) so that this header stays free of torch.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace medr1::model {

enum class QwenVLVersion { Qwen2VL, Qwen2_5VL };

// "qwen2_vl" / "qwen2_5_vl".
const char* model_type_name(QwenVLVersion v);

struct Qwen2VLConfig {
  QwenVLVersion version = QwenVLVersion::Qwen2VL;
  std::string model_type = "qwen2_vl";
  std::vector<std::string> architectures;

  // Text decoder (HF defaults of Qwen2VLConfig.__init__).
  int64_t vocab_size = 152064;
  int64_t hidden_size = 8192;
  int64_t intermediate_size = 29568;
  int64_t num_hidden_layers = 80;
  int64_t num_attention_heads = 64;
  int64_t num_key_value_heads = 8;  // null/absent -> num_attention_heads
  double rms_norm_eps = 1e-5;
  double rope_theta = 1000000.0;
  int64_t max_position_embeddings = 32768;
  bool tie_word_embeddings = false;
  std::string torch_dtype = "float32";  // "float32" | "bfloat16" | "float16"
  std::string hidden_act = "silu";      // only silu is supported

  // rope_scaling: {"type"|"rope_type": "mrope"|"default", "mrope_section": [t, h, w]}.
  std::string rope_type = "default";
  std::vector<int64_t> mrope_section;  // sum == head_dim / 2

  // Special token ids (config.json; absent -> the ids of the released Qwen2-VL checkpoints).
  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t vision_end_token_id = 151653;
  int64_t vision_token_id = 151654;
  std::vector<int64_t> bos_token_id;  // int or list in the file; empty = null
  std::vector<int64_t> eos_token_id;
  std::optional<int64_t> pad_token_id;

  nlohmann::json vision_config;  // the "vision_config" object as in the file
  nlohmann::json raw;            // the whole file, so to_json() keeps keys we do not model

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// Parses a config.json document; `file` names it in errors ("config.json: rope_scaling.mrope_section: missing").
Qwen2VLConfig parse_qwen2_vl_config(const nlohmann::json& j, const std::string& file);
// Reads `path` (a config.json file or a checkpoint folder holding one).
Qwen2VLConfig load_qwen2_vl_config(const std::string& path);
// The config as transformers' config.json (unknown keys of the source file are kept).
nlohmann::json to_json(const Qwen2VLConfig& cfg);

// generation_config.json, with the defaults of transformers.GenerationConfig.
struct GenerationConfig {
  std::vector<int64_t> eos_token_id;  // int or list in the file
  std::optional<int64_t> pad_token_id;
  std::optional<int64_t> bos_token_id;
  bool do_sample = false;
  double temperature = 1.0;
  int64_t top_k = 50;
  double top_p = 1.0;
  double repetition_penalty = 1.0;
  std::optional<int64_t> max_new_tokens;
  int64_t max_length = 20;
  nlohmann::json raw;
};

GenerationConfig parse_generation_config(const nlohmann::json& j, const std::string& file);
// Reads `path` (a generation_config.json file or a checkpoint folder holding one).
GenerationConfig load_generation_config(const std::string& path);
nlohmann::json to_json(const GenerationConfig& cfg);

}  // namespace medr1::model
