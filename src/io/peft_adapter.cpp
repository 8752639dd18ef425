// PEFT adapter folders on disk (see io/peft_adapter.h).
#include "medr1/io/peft_adapter.h"

#include <filesystem>

#include "medr1/io/checkpoint.h"
#include "medr1/io/safetensors.h"

namespace fs = std::filesystem;

namespace medr1::io {

std::string peft_key(const std::string& param_name) {
  std::string key = "base_model.model.";
  key.append(param_name);
  return key;
}

bool is_peft_adapter_dir(const std::string& dir) {
  return fs::exists(fs::path(dir) / kPeftAdapterConfig);
}

void write_peft_adapter(const std::string& dir,
                        const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                        const nlohmann::json& adapter_config) {
  fs::create_directories(dir);
  std::vector<std::pair<std::string, at::Tensor>> keyed;
  keyed.reserve(tensors.size());
  for (const auto& [n, t] : tensors) keyed.emplace_back(peft_key(n), t.detach());
  save_safetensors((fs::path(dir) / kPeftAdapterWeights).string(), keyed);
  write_json_atomic((fs::path(dir) / kPeftAdapterConfig).string(), adapter_config);
}

}  // namespace medr1::io
