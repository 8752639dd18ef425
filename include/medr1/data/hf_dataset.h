// Hugging Face `datasets` folders as Med-R1 records: what Med-R1 trains on with
// load_from_disk(dataset_name). A Dataset folder (Dataset.save_to_disk: data-0000i-of-0000N.arrow
// Arrow IPC streams, dataset_info.json, state.json) or a DatasetDict folder (dataset_dict.json +
// one such folder per split), with columns `image` (Image feature: struct {bytes, path}; a plain
// string column is taken as a path), `problem`, `solution` (strings) and any others. Read and
// written with Apache Arrow's C++ library (src/data/hf_dataset.cpp); no Arrow type leaks into this
// header. Images are not decoded here (vision/image_io does that).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "medr1/data/dataset.h"

namespace medr1::data {

// True for a folder holding state.json, dataset_info.json or dataset_dict.json.
bool is_hf_dataset(const std::string& path);

// The split a DatasetDict folder is read from under `opts` (opts.hf_split when the folder has it,
// else its only split; error listing the splits otherwise); "" for a Dataset folder.
std::string choose_hf_split(const std::string& folder, const LoadOptions& opts);

// All rows of a Dataset folder (shards in state.json's _data_files order) or of the chosen split of
// a DatasetDict folder. Per record: image = the Image's `path` ("<folder>#<row>" when null, the
// folder of the split for a DatasetDict), image_bytes = its `bytes` (then image_path = image); with
// bytes null the path is a file, resolved against opts.image_root into image_path. problem is
// required, solution as opts.require_solution says (null counts as absent). Other columns go to
// `extra` when they are null, booleans, integers, floats, strings, or lists / structs of those;
// columns of other types (binary, timestamps, ...) are left out with one warning. source_file = the
// folder (its split folder for a DatasetDict), file_index = the row in the split. Errors name the
// folder, the split, the row and the field, e.g. "data/CT_384 (train): row 12: solution: missing",
// "data/CT_384: data-00000-of-00001.arrow: problem: expected string, got int64".
std::vector<Record> load_hf_dataset(const std::string& folder, const LoadOptions& opts = {},
                                    int64_t first_index = 0);

// Writes `records` as a Dataset folder that datasets.load_from_disk loads unchanged: one Arrow IPC
// stream data-00000-of-00001.arrow (record batches of 100 rows, the schema's "huggingface" metadata
// as datasets writes it), dataset_info.json (features: image Image, problem / solution string
// Value, then the extra keys), state.json (_split = `split`, null when ""; _fingerprint from the
// file's bytes). The image is record.image_bytes, else the file at image_path is read and embedded
// (as save_to_disk embeds local files); its `path` is record.image. solution is written when any
// record has one (null where absent). Extra keys (first-seen order) become int64 / float64 / bool /
// string columns when every value is of that kind (or null); other values are written as their JSON
// text. Creates `folder`; replaces files of an earlier write.
void write_hf_dataset(const std::vector<Record>& records, const std::string& folder,
                      const std::string& split = "");

// A DatasetDict folder: write_hf_dataset(records, folder/<split>, split) per split, then
// dataset_dict.json.
void write_hf_dataset_dict(const std::vector<std::pair<std::string, std::vector<Record>>>& splits,
                           const std::string& folder);

}  // namespace medr1::data
