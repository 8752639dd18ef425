// top_entropy_quantile over two gloo ranks (this binary re-executed through the launcher): the quantile is
// taken over every rank's non-pad entropies (TRL gathers them), not per rank; a rank without a valid token
// still joins and gets an all-false mask.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <chrono>
#include <vector>

#include "dist/dist_test_util.h"
#include "medr1/dist/process_group.h"
#include "medr1/rl/train_phases.h"

namespace medr1::dist {
namespace {

using testing::worker_is;

at::Tensor row(std::vector<double> v) { return at::tensor(v, at::kFloat).view({1, -1}); }
at::Tensor bools(std::vector<int> v) { return at::tensor(v, at::kInt).view({1, -1}).to(at::kBool); }

TEST(DistWorker, TopEntropyGather) {
  if (!worker_is("TopEntropyGather")) GTEST_SKIP() << "worker mode only";
  ProcessGroupOptions o;
  o.timeout = std::chrono::seconds(10);
  o.rendezvous_timeout = std::chrono::seconds(40);
  ProcessGroup pg(read_launch_env(), o);
  ASSERT_EQ(pg.world_size(), 2);
  const int r = pg.rank();
  // rank 0: low entropies (and one padded high one), rank 1: high ones, another length.
  const at::Tensor ent = r == 0 ? row({0.1, 0.2, 0.3, 9.0}) : row({0.9, 0.8, 0.7});
  const at::Tensor mask = r == 0 ? bools({1, 1, 1, 0}) : bools({1, 1, 1});
  // Pool {0.1 0.2 0.3 0.7 0.8 0.9}; top_entropy_quantile 0.5 -> quantile 0.5 at position 2.5 = 0.5: rank 0
  // keeps nothing, rank 1 everything (per-rank quantiles would keep 0.2, 0.3 on rank 0).
  const at::Tensor m = rl::gathered_high_entropy_mask(pg, ent, mask, 0.5);
  EXPECT_TRUE(at::equal(m, r == 0 ? bools({0, 0, 0, 0}) : bools({1, 1, 1}))) << "rank " << r << ": " << m;
  // top 1/6 -> quantile 5/6 at position 4.17 -> 0.8 + 0.17 * 0.1: only 0.9 (rank 1's first)
  const at::Tensor top = rl::gathered_high_entropy_mask(pg, ent, mask, 1.0 / 6.0);
  EXPECT_TRUE(at::equal(top, r == 0 ? bools({0, 0, 0, 0}) : bools({1, 0, 0}))) << "rank " << r << ": " << top;
  // Rank 0 without any valid token: it still joins the gathers; rank 1's tokens alone set the quantile.
  const at::Tensor none = r == 0 ? bools({0, 0, 0, 0}) : mask;
  const at::Tensor n = rl::gathered_high_entropy_mask(pg, ent, none, 0.5);  // pool {0.7 0.8 0.9}: q 0.8
  EXPECT_TRUE(at::equal(n, r == 0 ? bools({0, 0, 0, 0}) : bools({1, 1, 0}))) << "rank " << r << ": " << n;
}

TEST(Dist, TopEntropyQuantileIsTakenOverEveryRanksTokens) {
  testing::ScratchDir dir;
  const auto res = testing::run_scenario("TopEntropyGather", testing::worker_options("TopEntropyGather", dir));
  EXPECT_EQ(res.exit_code, 0) << res.message;
}

}  // namespace
}  // namespace medr1::dist
