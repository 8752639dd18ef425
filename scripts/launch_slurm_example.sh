#!/usr/bin/env bash
# SLURM example: data-parallel medr1-train over N nodes x 8 GPUs (NCCL build, -DMEDR1_CUDA=ON).
# Two equivalent ways; pick one with MODE:
#   MODE=launcher (default): one task per node; medr1-train's own launcher (torchrun-like,
#     --nproc-per-node) forks the 8 local ranks and sets RANK/LOCAL_RANK/WORLD_SIZE/... for them.
#   MODE=srun: one task per GPU; srun starts every rank and this script maps SLURM's variables to
#     torchrun's (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR/PORT).
# Submit: sbatch --nodes=2 scripts/launch_slurm_example.sh configs/train/<run>.json [extra flags]
# Variables (all optional):
#   MEDR1_BIN      the medr1-train binary (default ./build/medr1-train; a CPU/gloo build works too)
#   GPUS_PER_NODE  ranks per node (default 8; on CPU nodes: the number of gloo ranks per node)
#   MEDR1_DEVICE   passed as --device (cuda, cpu); unset: the config's `device`
#   MASTER_PORT    rank 0's TCPStore port (default 29500); GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME
# Extra arguments after the config go to every medr1-train unchanged (one word each, quoting kept).
# tests/dist/train_multinode_test.cpp runs both modes with a fake srun/scontrol on one machine.
#SBATCH --job-name=medr1-grpo
#SBATCH --nodes=2
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=96
#SBATCH --time=24:00:00
#SBATCH --output=medr1-%j.log
set -euo pipefail

CONFIG=${1:?usage: launch_slurm_example.sh <train-config.json> [extra medr1-train flags]}
shift
MODE=${MODE:-launcher}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
BIN=${MEDR1_BIN:-./build/medr1-train}
EXTRA=("$@")
if [ -n "${MEDR1_DEVICE:-}" ]; then EXTRA+=(--device "$MEDR1_DEVICE"); fi

# Rank 0's host serves the c10d TCPStore; the port must be free on it.
# (sed reads all of scontrol's output: no SIGPIPE for pipefail on long node lists)
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)
export MASTER_ADDR
export MASTER_PORT=${MASTER_PORT:-29500}
# NCCL over InfiniBand between nodes; adjust the interface names to the cluster.
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-^lo,docker}
export GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-}
[ -z "$GLOO_SOCKET_IFNAME" ] && unset GLOO_SOCKET_IFNAME
export GPUS_PER_NODE

# The per-task commands: srun runs them once per task with that task's SLURM_* variables; the
# binary, the config and the extra flags travel as arguments ($0, $1, $2...), not inside the string.
if [ "$MODE" = launcher ]; then
  # One task per node: SLURM_NODEID is this node's rank.
  srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c '
    exec "$0" --config "$1" \
      --nproc-per-node "$GPUS_PER_NODE" --nnodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID" \
      --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" "${@:2}"' "$BIN" "$CONFIG" ${EXTRA[@]+"${EXTRA[@]}"}
elif [ "$MODE" = srun ]; then
  # One task per GPU: translate SLURM's ids into torchrun's variables, per task. Every task sees
  # all GPUs of its node and picks cuda:LOCAL_RANK (no --gpus-per-task, which would renumber).
  srun --ntasks-per-node="$GPUS_PER_NODE" --kill-on-bad-exit=1 bash -c '
    export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS
    export LOCAL_RANK=$SLURM_LOCALID LOCAL_WORLD_SIZE=$GPUS_PER_NODE
    export GROUP_RANK=$SLURM_NODEID
    exec "$0" --config "$1" "${@:2}"' "$BIN" "$CONFIG" ${EXTRA[@]+"${EXTRA[@]}"}
else
  echo "launch_slurm_example.sh: MODE must be launcher or srun, got '$MODE'" >&2
  exit 2
fi
