// GRPO / SFT training loop (grpo_trainer.h): the orchestration only, in the torchtitan manner. Each
// step is generation round (rollouts -> rewards -> advantages -> reference / old logps) -> update
// (forward / backward per micro-batch, DDP grad averaging, clipping, AdamW) -> logging -> saving;
// the phases live in train_phases.cpp, the run's files (metrics.jsonl, TensorBoard,
// completions.jsonl, SVG curves) in train_logger.cpp, the math in rewards / advantages /
// policy_loss / lr_schedule / optim.
#include "medr1/rl/grpo_trainer.h"

#include <chrono>
#include <memory>

#include "medr1/data/progress.h"
#include "medr1/rl/train_logger.h"
#include "medr1/rl/train_phases.h"

namespace medr1::rl {

using Clock = std::chrono::steady_clock;

TrainResult train(const GRPOConfig& cfg, const TrainerHooks& hooks) {
  std::unique_ptr<TrainSession> s = set_up(cfg, hooks);
  TrainerState& st = s->st;
  const int64_t total = s->plan.total_steps;
  TrainLogger logger(s->cfg, s->is_main, st.log_history, st.global_step);
  std::unique_ptr<data::ProgressBar> bar;
  data::ProgressOptions po;
  po.initial = st.global_step;
  if (hooks.progress_bar && s->is_main)
    bar = std::make_unique<data::ProgressBar>(s->sft ? "sft" : "grpo", total, po);
  std::vector<MicroBatch> round;
  TrainResult result;
  while (st.global_step < total) {
    const int64_t step = st.global_step;
    const auto t_step = Clock::now();
    const double lr = set_step_learning_rate(*s, step);
    if (s->sft || step % s->cfg.num_iterations == 0)
      round = generation_round(*s, step);           // num_iterations: reuse
    const StepMetrics m = update(*s, round, step);  // st.global_step = step + 1
    sync_reference_step(*s);                        // sync_ref_model (TR-DPO), TRL's on_step_end
    if (st.global_step % s->cfg.logging_steps == 0 || st.global_step == total) {
      nlohmann::json rec =
          metrics_record(m, s->cfg.reward_funcs, s->sft, st.global_step, epoch_progress(*s), lr,
                         std::chrono::duration<double>(Clock::now() - t_step).count());
      average_over_ranks(*s->pg, rec);
      st.log_history.push_back(rec);
      logger.log(rec, s->cfg.log_completions && s->is_main
                          ? completion_rows(round, s->records, st.global_step)
                          : std::vector<nlohmann::json>{});
      if (hooks.on_log) hooks.on_log(rec);
    }
    if (bar) bar->advance();
    if (st.global_step % s->cfg.save_steps == 0) {
      result.last_checkpoint = save_checkpoint_step(*s);
      logger.write_plots(st.log_history);
    }
  }
  if (bar) bar->finish();
  save_final_model(*s);  // trainer.save_model(output_dir): the final model as a loadable HF folder
  logger.write_plots(st.log_history);
  result.global_step = st.global_step;
  result.log_history = st.log_history;
  return result;
}

}  // namespace medr1::rl
