// medr1-prepare: the OmniMedVQA release -> Med-R1's Splits/ layout (+ optional 384x384 resized
// image copies). The work is in medr1::prepare (include/medr1/prepare/prepare.h); this file only
// parses flags.
#include <CLI/CLI.hpp>
#include <csignal>
#include <exception>
#include <iostream>

#include "medr1/prepare/prepare.h"

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit (ulimit -f) fails the write (EFBIG, reported), not the process
  CLI::App app{
      "medr1-prepare: OmniMedVQA -> Med-R1 Splits/{modality,question_type}/{train,test}/*.json"};
  medr1::prepare::PrepareOptions o;
  std::string access = "open";
  app.add_option("--omnimedvqa-root,--input", o.root,
                 "OmniMedVQA folder (holds Images/ and QA_information/)")
      ->required();
  app.add_option("--output", o.output, "folder that gets Splits/ and prepare_report.json")
      ->required();
  app.add_option("--seed", o.seed, "seed of the 80/20 split")->capture_default_str();
  app.add_option("--test-ratio", o.test_ratio, "share of each group that goes to test")
      ->capture_default_str();
  app.add_option("--access", access,
                 "open | restricted | all (QA_information/<Open|Restricted>-access)")
      ->capture_default_str();
  app.add_option("--resize", o.resize,
                 "write NxN RGB copies (Pillow bicubic) under --image-output");
  app.add_option("--image-output", o.image_output,
                 "root of the resized copies (same relative paths)");
  app.add_option("--num-workers", o.num_workers, "threads (0 = all cores)")->capture_default_str();
  app.add_option("--format", o.format,
                 "json (Splits/ only) | hf-dataset (also datasets/<type>/<name>/ DatasetDict "
                 "folders, Med-R1's --dataset_name)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    o.access = medr1::prepare::parse_access(access);
    medr1::prepare::run_prepare(o);
  } catch (const std::exception& e) {
    std::cerr << "medr1-prepare: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
