// OmniMedVQA as Med-R1 splits it: Splits/{modality,question_type}/{train,test}/<Name>_<stage>.json,
// each a JSON array of {"image": "Images/<SourceDataset>/...", "problem", "solution"} records.
// Enumeration mirrors AdvMed-R1 batch_eval_adversarial.py (sorted {splits}/{type}/test/*.json,
// name = file name minus "_test.json"). Real names keep their typos and odd brackets, e.g.
// "MR (Mag-netic Resonance Imaging)", "OCT (Optical Coherence Tomography".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "medr1/data/dataset.h"

namespace medr1::data {

enum class EvaluationType { modality, question_type, both };

// "modality" | "question_type" | "both"; error otherwise.
EvaluationType parse_evaluation_type(std::string_view s);
const char* to_string(EvaluationType t);

struct SplitFile {
  std::string type;   // "modality" or "question_type" (the folder under Splits/)
  std::string stage;  // "test" or "train"
  std::string name;   // display name, e.g. "CT(Computed Tomography)"
  std::string path;   // full path of the JSON file
};

// Display name from a split file name: drops the extension (.json/.jsonl), then a trailing
// "_<stage>" with anything after it that starts with '.' (vendored "…_test.first20.json"), e.g.
//   "CT(Computed Tomography)_test.json" -> "CT(Computed Tomography)"
//   "Modality Recognition_test.first20.json" -> "Modality Recognition"
//   "X-Ray_train.first20.json" (stage "train") -> "X-Ray"
// A name without the stage suffix is kept whole (minus the extension).
std::string split_name_from_filename(std::string_view filename, std::string_view stage = "test");

// Split files of `splits_dir` for `type` (both = modality then question_type), each folder's
// *.json/*.jsonl and `datasets` folders (hf_dataset.h) sorted by name. `only_names` (AdvMed-R1 --modalities) keeps those display
// names, in the listed order; an unknown name is an error that lists the available ones.
// Errors: splits_dir or a needed <type>/<stage> folder missing.
std::vector<SplitFile> list_split_files(const std::string& splits_dir, EvaluationType type,
                                        std::string_view stage = "test",
                                        const std::vector<std::string>& only_names = {});

// All records of a split file (load_records_file, image paths joined to `dataset_root`; a record without
// a solution is kept, solution unset: evaluation makes it an error item instead of losing the split; a DatasetDict folder gives its `stage` split); extra gets "split" = name and "split_type" = type.
std::vector<Record> load_split(const SplitFile& split, const std::string& dataset_root);

// Source dataset of an OmniMedVQA image path: "Images/Chest CT Scan/test/x.png" -> "Chest CT Scan";
// "" if the path does not start with "Images/".
std::string source_dataset_of(std::string_view image);

}  // namespace medr1::data
