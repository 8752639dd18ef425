// Data-parallel training equals single-process training: a toy MLP (with a frozen layer, a
// never-used layer and a sometimes-used parameter) trained for 4 steps (2 SGD, 2 AdamW) by 2 gloo
// ranks, each on its half of the global batch in 2 accumulation micro-steps, matches a
// single-process run over the whole batch, and the two ranks stay bitwise identical. Gradient
// buckets start during backward (grad hooks), all of them once prepare_for_backward is used.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cstdio>
#include <fstream>

#include "dist/dist_test_util.h"
#include "medr1/dist/grad_sync.h"
#include "medr1/dist/process_group.h"

namespace medr1::dist {
namespace {

using testing::worker_dir;
using testing::worker_is;

constexpr int kSteps = 4;
constexpr int64_t kGlobalBatch = 16;  // B
constexpr int64_t kIn = 8, kHidden = 16, kOut = 4;

struct ToyNetImpl : torch::nn::Module {
  // Registered first so they sit in the last buckets (buckets follow reverse registration order)
  // and the MLP's buckets can start during backward.
  at::Tensor extra;         // used only by samples with flag=1 (sometimes by no rank at all)
  torch::nn::Linear unused{nullptr};  // never used: grad stays undefined everywhere
  torch::nn::Linear frozen{nullptr};  // requires_grad=false: not synced, never changes
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

  ToyNetImpl() {
    extra = register_parameter("extra", at::randn({kIn}) * 0.1);
    unused = register_module("unused", torch::nn::Linear(kOut, kOut));
    frozen = register_module("frozen", torch::nn::Linear(kIn, kOut));
    for (auto& p : frozen->parameters()) p.requires_grad_(false);
    fc1 = register_module("fc1", torch::nn::Linear(kIn, kHidden));
    fc2 = register_module("fc2", torch::nn::Linear(kHidden, kOut));
  }

  // Sum over the given samples of ||mlp(x) + frozen(x) - y||^2 + flag * <extra, x>.
  at::Tensor loss_sum(const at::Tensor& x, const at::Tensor& y, const at::Tensor& flag) {
    auto pred = fc2->forward(at::tanh(fc1->forward(x))) + frozen->forward(x);  // [N, O]
    auto l = (pred - y).pow(2).sum();
    if (flag.sum().item<double>() > 0) l = l + (flag * at::matmul(x, extra)).sum();
    return l;
  }
};
TORCH_MODULE(ToyNet);

struct Data {
  at::Tensor x, y, flag;  // [S, B, I], [S, B, O], [S, B]
};

Data make_data() {
  at::manual_seed(7);
  Data d;
  d.x = at::randn({kSteps, kGlobalBatch, kIn});
  d.y = at::randn({kSteps, kGlobalBatch, kOut});
  d.flag = at::zeros({kSteps, kGlobalBatch});
  // Step 0 (SGD): only rank 0's first micro-batch uses `extra` (rank 1: locally unused).
  d.flag[0][1] = 1;
  // Step 1 (SGD): only rank 1's last micro-batch.
  d.flag[1][14] = 1;
  // Step 2 (AdamW): nobody uses it: it must keep an undefined grad (a zero grad would still
  // move it through weight decay).  Step 3 (AdamW): both ranks.
  d.flag[3][3] = 1;
  d.flag[3][9] = 1;
  return d;
}

at::Tensor flat_params(ToyNet& net) {
  std::vector<at::Tensor> ps;
  for (auto& p : net->parameters()) ps.push_back(p.detach().reshape({-1}));
  return at::cat(ps);
}

// SGD for steps 0-1 (its update is proportional to the gradient, so a wrong average scale
// shows), AdamW for steps 2-3 (scale-invariant, but sensitive to zero vs undefined grads).
struct Opt {
  torch::optim::SGD sgd;
  torch::optim::AdamW adamw;
  explicit Opt(ToyNet& net)
      : sgd(net->parameters(), torch::optim::SGDOptions(0.1)),
        adamw(net->parameters(), torch::optim::AdamWOptions(0.05).weight_decay(0.01)) {}
  void step(int s) {
    if (s < 2) {
      sgd.step();
    } else {
      adamw.step();
    }
  }
};

void clear_grads(ToyNet& net) {
  for (auto& p : net->parameters()) p.mutable_grad() = at::Tensor();
}

std::string param_file(int rank, int step) {
  return (worker_dir() / ("params_r" + std::to_string(rank) + "_s" + std::to_string(step) + ".bin"))
      .string();
}

TEST(DistWorker, TrainToy) {
  if (!worker_is("TrainToy")) GTEST_SKIP() << "worker mode only";
  ProcessGroupOptions po;
  po.timeout = std::chrono::seconds(10);
  po.rendezvous_timeout = std::chrono::seconds(40);
  ProcessGroup pg(read_launch_env(), po);
  const int r = pg.rank();
  const Data d = make_data();
  at::manual_seed(r == 0 ? 42 : 1234);  // rank 1 starts different: the broadcast must fix it
  ToyNet net;
  GradSyncOptions so;
  so.bucket_cap_bytes = 256;  // several buckets on this toy (fc1.weight alone is 512 B)
  GradSync sync(pg, *net, so);
  ASSERT_GE(sync.stats().n_buckets, 3);
  Opt opt(net);
  const int64_t half = kGlobalBatch / 2, micro = half / 2;
  for (int s = 0; s < kSteps; ++s) {
    clear_grads(net);
    for (int m = 0; m < 2; ++m) {
      const int64_t lo = r * half + m * micro;
      auto guard = m == 0 ? sync.no_sync() : GradSync::NoSyncGuard{};
      // Per-rank mean over its half, accumulated over 2 micro-steps; the average over ranks is
      // then the global mean.
      auto loss = net->loss_sum(d.x[s].narrow(0, lo, micro), d.y[s].narrow(0, lo, micro),
                                d.flag[s].narrow(0, lo, micro)) /
                  static_cast<double>(half);
      // Steps 2-3 also mark parameters the loss cannot reach (`unused`, `extra` when no flag)
      // ready before backward, so every bucket starts before finalize().
      if (m == 1 && s >= 2) sync.prepare_for_backward(loss);
      loss.backward();
    }
    sync.finalize();
    // The MLP buckets completed inside backward and were started from the hooks (overlap).
    EXPECT_GE(sync.stats().launched_in_backward, 1) << "step " << s;
    if (s >= 2) {
      EXPECT_EQ(sync.stats().launched_in_finalize, 0) << "step " << s;
    } else {
      EXPECT_GE(sync.stats().launched_in_finalize, 1) << "step " << s;  // unused held one back
    }
    opt.step(s);
    const auto flat = flat_params(net);
    const auto all = pg.allgather(flat);
    ASSERT_TRUE(at::equal(all[0], all[1])) << "ranks diverged at step " << s;
    std::ofstream f(param_file(r, s), std::ios::binary);
    f.write(static_cast<const char*>(flat.data_ptr()), flat.numel() * 4);
  }
  EXPECT_EQ(sync.stats().syncs, kSteps);

  // bf16 parameters: gloo cannot sum bf16, so their bucket is fp32 and the mean is rounded to
  // bf16 once, exactly as (a + b) / 2 computed in fp32.
  at::manual_seed(5);
  torch::nn::Linear lin(4, 3);
  lin->to(at::kBFloat16);
  GradSync sync_bf16(pg, *lin);
  auto x = (at::randn({2, 4}) + r).to(at::kBFloat16);
  lin->forward(x).pow(2).sum().backward();
  const auto local = lin->weight.grad().to(at::kFloat);
  sync_bf16.finalize();
  const auto grads = pg.allgather(local);
  const auto expected = ((grads[0] + grads[1]) / 2).to(at::kBFloat16);
  EXPECT_FALSE(at::equal(grads[0], grads[1]));  // the ranks really had different grads
  EXPECT_EQ(lin->weight.grad().scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(lin->weight.grad(), expected));
}

TEST(Dist, TwoRankTrainingMatchesSingleProcess) {
  testing::ScratchDir dir;
  const auto res = testing::run_scenario("TrainToy", testing::worker_options("TrainToy", dir));
  ASSERT_EQ(res.exit_code, 0) << res.message;

  // Reference: one process, the whole global batch per step, no accumulation.
  const Data d = make_data();
  at::manual_seed(42);
  ToyNet net;
  const auto init = flat_params(net);
  Opt opt(net);
  double max_diff = 0.0;
  for (int s = 0; s < kSteps; ++s) {
    clear_grads(net);
    auto loss = net->loss_sum(d.x[s], d.y[s], d.flag[s]) / static_cast<double>(kGlobalBatch);
    loss.backward();
    EXPECT_EQ(net->unused->weight.grad().defined(), false);
    opt.step(s);
    const auto ref = flat_params(net);
    for (int r = 0; r < 2; ++r) {
      std::ifstream f((dir.path / ("params_r" + std::to_string(r) + "_s" + std::to_string(s) + ".bin")),
                      std::ios::binary);
      ASSERT_TRUE(f.good()) << "missing params of rank " << r << " step " << s;
      auto got = at::empty_like(ref);
      f.read(static_cast<char*>(got.data_ptr()), got.numel() * 4);
      const double diff = (got - ref).abs().max().item<double>();
      max_diff = std::max(max_diff, diff);
      EXPECT_LT(diff, 1e-5) << "rank " << r << " step " << s;
    }
  }
  // Training moved the parameters (the comparison is not vacuous).
  EXPECT_GT((flat_params(net) - init).abs().max().item<double>(), 0.05);
  std::printf("[TrainToy] max |param(2 ranks) - param(1 process)| over %d steps (2 SGD, 2 AdamW): %.3g\n",
              kSteps, max_diff);
}

// Same process, world of 1: GradSync must leave grads exactly as plain backward made them.
TEST(Dist, GradSyncWorldOfOneIsIdentity) {
  ProcessGroup pg;
  at::manual_seed(3);
  ToyNet net;
  GradSync sync(pg, *net);
  const Data d = make_data();
  auto loss = net->loss_sum(d.x[0], d.y[0], d.flag[0]);
  loss.backward();
  const auto g = net->fc1->weight.grad().clone();
  sync.finalize();
  EXPECT_TRUE(at::equal(net->fc1->weight.grad(), g));
  EXPECT_FALSE(net->unused->weight.grad().defined());
}

}  // namespace
}  // namespace medr1::dist
