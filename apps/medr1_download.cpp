// medr1-download: fetch a Hugging Face Hub model repo into a local folder (Med-R1's
// download_model.sh), speaking the Hub's HTTP API as huggingface_hub's
// snapshot_download(local_dir=...) does; resumable, verified (sha256 / git sha1), files in
// parallel. HF_ENDPOINT overrides the host. Exit codes: 0 ok, 2 usage, 3 token / access, 4 not
// found, 5 network / server, 6 checksum, 7 disk full, 1 anything else.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "medr1/core/logging.h"
#include "medr1/hub/snapshot_download.h"

namespace hub = medr1::hub;

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit (ulimit -f) fails the write (EFBIG, reported), not the process
  CLI::App app{
      "medr1-download: download a Hugging Face Hub model (preset or ORG/NAME) into a folder"};
  std::string model, output, token, revision = "main", endpoint;
  std::vector<std::string> include, exclude;
  bool list = false, quiet = false;
  int max_workers = 8, retries = 5;
  app.add_option("--model", model, "preset (see --list) or Hub repo id ORG/NAME");
  app.add_option("--output", output, "target folder (default: checkpoints/<NAME>)");
  app.add_flag("--list", list, "print the presets and exit");
  app.add_option("--token", token,
                 "Hub token (default: $HF_TOKEN, else $HF_TOKEN_PATH / $HF_HOME/token / "
                 "~/.cache/huggingface/token)");
  app.add_option("--revision", revision, "branch, tag or commit")->capture_default_str();
  app.add_option("--max-workers", max_workers, "files downloaded in parallel")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--include", include,
                 "only files matching these fnmatch patterns (allow_patterns)");
  app.add_option("--exclude", exclude,
                 "skip files matching these fnmatch patterns (ignore_patterns)");
  app.add_option("--retries", retries,
                 "retries per request on network errors / 5xx (exponential backoff)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  app.add_option("--endpoint", endpoint,
                 "Hub URL (default: $HF_ENDPOINT, else https://huggingface.co)");
  app.add_flag("--quiet", quiet, "no progress line");
  CLI11_PARSE(app, argc, argv);

  if (list) {
    for (const auto& p : hub::model_presets()) {
      std::printf("%-15s %-30s %s\n", p.name.c_str(), p.repo_id.c_str(), p.description.c_str());
    }
    return 0;
  }
  medr1::init_logging();
  if (model.empty()) {
    spdlog::error("--model is required (a preset from --list, or ORG/NAME)");
    return 2;
  }
  try {
    hub::DownloadOptions o;
    o.repo_id = hub::resolve_model(model);
    o.output_dir =
        output.empty() ? "checkpoints/" + o.repo_id.substr(o.repo_id.find('/') + 1) : output;
    o.revision = revision;
    o.endpoint = endpoint;
    std::string token_source;
    o.token = hub::resolve_token(token, &token_source);
    o.include = include;
    o.exclude = exclude;
    o.max_workers = max_workers;
    o.max_retries = retries;
    o.progress = !quiet;
    spdlog::info("{}@{} -> {} ({}; token: {})", o.repo_id, o.revision, o.output_dir,
                 o.endpoint.empty() ? hub::default_endpoint() : o.endpoint,
                 token_source.empty() ? "none" : token_source);
    const auto rep = hub::snapshot_download(o);
    spdlog::info("{} at commit {}: {} files, {} downloaded ({} fetched{}), {} already present; {}",
                 rep.repo_id, rep.commit, rep.files_total, rep.files_downloaded,
                 hub::format_bytes(static_cast<double>(rep.bytes_fetched)),
                 rep.bytes_resumed > 0
                     ? ", " + hub::format_bytes(static_cast<double>(rep.bytes_resumed)) + " resumed"
                     : std::string(),
                 rep.files_skipped, o.output_dir);
    return 0;
  } catch (const hub::HubError& e) {
    spdlog::error("{}", e.what());
    switch (e.kind()) {
      case hub::ErrorKind::kAuth:
        return 3;
      case hub::ErrorKind::kNotFound:
        return 4;
      case hub::ErrorKind::kNetwork:
        return 5;
      case hub::ErrorKind::kChecksum:
        return 6;
      case hub::ErrorKind::kDiskFull:
        return 7;
      default:
        return 1;
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
