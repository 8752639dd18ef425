// medr1-tokenize: JSONL tokenizer front end. Each input line {"text": ...} becomes {"ids": [...]}
// (--decode: {"ids": [...]} becomes {"text": ...}), one output line per input line, in order.
// The tokenizer folder holds tokenizer.json and optionally tokenizer_config.json.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <string>

#include "medr1/core/error.h"
#include "medr1/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  CLI::App app{"medr1-tokenize: encode {\"text\"} / decode {\"ids\"} JSONL lines with a Hugging Face tokenizer.json"};
  std::string tokenizer_dir, input, output;
  bool decode = false, skip_special = false;
  app.add_option("--tokenizer", tokenizer_dir, "folder with tokenizer.json [+ tokenizer_config.json]")->required();
  app.add_option("--input", input, "JSONL input file (default: stdin)");
  app.add_option("--output", output, "JSONL output file (default: stdout)");
  app.add_flag("--decode", decode, "decode {\"ids\": [...]} lines into {\"text\": ...}");
  app.add_flag("--skip-special-tokens", skip_special, "with --decode: drop special added tokens");
  CLI11_PARSE(app, argc, argv);

  const std::string in_name = input.empty() ? std::string("<stdin>") : input;
  try {
    const auto tok = medr1::tokenizer::Tokenizer::from_dir(tokenizer_dir);
    std::ifstream in_file;
    if (!input.empty()) {
      in_file.open(input, std::ios::binary);
      MEDR1_CHECK(in_file.good(), "cannot open --input ", input);
    }
    std::istream& in = input.empty() ? std::cin : in_file;
    std::ofstream out_file;
    if (!output.empty()) {
      out_file.open(output, std::ios::binary);
      MEDR1_CHECK(out_file.good(), "cannot open --output ", output);
    }
    std::ostream& out = output.empty() ? std::cout : out_file;
    std::ios::sync_with_stdio(false);

    std::string line, buf;
    size_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      auto where = [&]() { return in_name + ":" + std::to_string(line_no) + ": "; };
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::parse_error& e) {
        medr1::fail(where(), "malformed JSON: ", e.what());
      }
      buf.clear();
      if (!decode) {
        MEDR1_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(), where(),
                    "expected an object {\"text\": <string>}");
        std::vector<int32_t> ids;
        try {
          ids = tok.encode(j["text"].get_ref<const std::string&>());
        } catch (const medr1::Error& e) {
          medr1::fail(where(), e.what());
        }
        buf += "{\"ids\": [";
        for (size_t i = 0; i < ids.size(); ++i) {
          if (i) buf += ", ";
          buf += std::to_string(ids[i]);
        }
        buf += "]}\n";
      } else {
        MEDR1_CHECK(j.is_object() && j.contains("ids") && j["ids"].is_array(), where(),
                    "expected an object {\"ids\": [<int>, ...]}");
        std::vector<int32_t> ids;
        ids.reserve(j["ids"].size());
        for (size_t i = 0; i < j["ids"].size(); ++i) {
          const auto& v = j["ids"][i];
          MEDR1_CHECK(v.is_number_integer() && v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX,
                      where(), "ids[", i, "]: expected a 32-bit integer, got ", v.dump());
          ids.push_back(v.get<int32_t>());
        }
        nlohmann::json o;
        o["text"] = tok.decode(ids, skip_special);
        buf += o.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        buf += "\n";
      }
      out << buf;
    }
    out.flush();
    MEDR1_CHECK(out.good(), "write failed");
  } catch (const std::exception& e) {
    std::cerr << "medr1-tokenize: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
