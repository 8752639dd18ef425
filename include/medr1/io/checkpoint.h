// Hugging Face checkpoint-folder helpers: crash-safe file writes, copying the tokenizer /
// processor side files that transformers' save_pretrained keeps next to the weights, and an
// atomic folder commit for trainer checkpoints (write everything into a temp folder, then
// commit_dir_atomic). Weights themselves: see safetensors.h. No torch here.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace medr1::io {

// The side files copied by copy_hf_side_files, in this order: tokenizer.json,
// tokenizer_config.json, preprocessor_config.json, chat_template.json, generation_config.json,
// special_tokens_map.json, added_tokens.json, vocab.json, merges.txt.
const std::vector<std::string>& hf_side_files();

// Copies each hf_side_files() entry that exists in src_dir into dst_dir (created if needed),
// each atomically. Absent files are skipped; returns nothing, throws medr1::Error on I/O errors.
void copy_hf_side_files(const std::string& src_dir, const std::string& dst_dir);

// Replaces `path` atomically: temp file in the same folder, write, fsync, rename, fsync folder.
// On error the old file is untouched and no temp file is left behind.
void write_file_atomic(const std::string& path, const std::string& content);

// write_file_atomic of j.dump(indent) + "\n" (indent 2 like transformers' to_json_file).
void write_json_atomic(const std::string& path, const nlohmann::json& j, int indent = 2);

// Makes the complete folder `tmp_dir` appear as `final_dir` (same filesystem, e.g. siblings):
// fsyncs every file and folder under tmp_dir, then
//  - if final_dir does not exist: rename(tmp_dir, final_dir);
//  - else: atomically swap the two (renameat2 RENAME_EXCHANGE), then delete the old content;
//    where the filesystem cannot swap, rename final_dir to final_dir + ".old", rename tmp_dir in,
//    remove the .old folder.
// fsyncs the parent folders. At every instant final_dir is either the old or the new complete
// folder, except in the fallback path between its two renames, which recover_dir_atomic repairs.
void commit_dir_atomic(const std::string& tmp_dir, const std::string& final_dir);

// After a crash inside commit_dir_atomic's fallback path: if final_dir is missing but
// final_dir + ".old" exists, renames it back; if both exist, removes the stale .old folder.
// Call before reading a checkpoint folder that may have been interrupted (commit does it too).
void recover_dir_atomic(const std::string& final_dir);

}  // namespace medr1::io
