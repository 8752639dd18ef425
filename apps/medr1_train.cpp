// medr1-train: GRPO (Med-R1) or SFT training from a run config (configs/train/*.json) with
// per-field CLI overrides of the same names (--learning_rate 1e-5 --resume latest ...). Thin:
// parse, then rl::train.
// --nproc-per-node N (with --nnodes --node-rank --master-addr --master-port) relaunches N workers.
#include <CLI/CLI.hpp>
#include <csignal>
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/core/logging.h"
#include "medr1/core/memory.h"
#include "medr1/dist/launch_env.h"
#include "medr1/dist/launcher.h"
#include "medr1/io/output_lock.h"
#include "medr1/rl/grpo_config_cli.h"
#include "medr1/rl/grpo_trainer.h"

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit (ulimit -f) fails the write (EFBIG, reported), not the process
  medr1::keep_freed_memory();
  medr1::init_logging();
  CLI::App app{"medr1-train: GRPO / SFT training of Qwen2-VL / Qwen2.5-VL (Med-R1)"};
  medr1::rl::GrpoCli cli;
  medr1::rl::add_grpo_config_options(app, cli);
  int nproc = 0, nnodes = 1, node_rank = 0, master_port = 29500;
  std::string master_addr = "127.0.0.1";
  app.add_option("--nproc-per-node,--nproc_per_node", nproc,
                 "launch N local workers (torchrun style)");
  app.add_option("--nnodes", nnodes, "number of nodes");
  app.add_option("--node-rank,--node_rank", node_rank, "this node's index");
  app.add_option("--master-addr,--master_addr", master_addr, "rank 0 host");
  app.add_option("--master-port,--master_port", master_port, "rank 0 port");
  CLI11_PARSE(app, argc, argv);
  try {
    if (nproc > 0)
      return medr1::dist::launch_local(nproc, nnodes, node_rank, master_addr, master_port, argc,
                                       argv);
    medr1::rl::GRPOConfig cfg = medr1::rl::resolve_grpo_config(cli);
    const medr1::dist::LaunchEnv env =
        medr1::dist::read_launch_env();  // torchrun's variables; validated here
    // One writer per run folder: a second medr1-train on the same output_dir is refused here,
    // naming this run (rank 0 holds it; a refused rank 0 exits and the launcher stops the other
    // ranks).
    std::optional<medr1::io::OutputLock> output_lock;
    if (env.is_main() && !cfg.output_dir.empty())
      output_lock.emplace(medr1::io::lock_output_dir(cfg.output_dir));
    if (env.is_main())
      spdlog::info(
          "metrics -> {}/metrics.jsonl; checkpoints -> {}/checkpoint-<step> every {} steps; final "
          "model -> {}",
          cfg.output_dir, cfg.output_dir, cfg.save_steps, cfg.output_dir);
    medr1::rl::TrainResult r = medr1::rl::train(cfg);
    if (env.is_main())
      spdlog::info("done: {} steps, model in {}, training curves in {}/plots/index.html",
                   r.global_step, cfg.output_dir, cfg.output_dir);
    // One-line verdict for GRPO runs: mean accuracy reward over the first vs the last (up to) 5
    // logged steps.
    std::vector<double> acc;
    for (const auto& rec : r.log_history)
      if (rec.contains("rewards/accuracy")) acc.push_back(rec["rewards/accuracy"].get<double>());
    if (env.is_main() && !acc.empty()) {
      const size_t k = std::min<size_t>(5, acc.size());
      double first = 0, last = 0;
      for (size_t i = 0; i < k; ++i) first += acc[i] / static_cast<double>(k);
      for (size_t i = acc.size() - k; i < acc.size(); ++i) last += acc[i] / static_cast<double>(k);
      spdlog::info(
          "accuracy reward: first {} steps {:.3f} -> last {} steps {:.3f} ({} logged steps)", k,
          first, k, last, acc.size());
    }
  } catch (const std::exception& e) {
    const char* rank = std::getenv("RANK");
    if (rank != nullptr)
      spdlog::error("rank {}: {}", rank, e.what());
    else
      spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
