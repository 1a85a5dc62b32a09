#!/usr/bin/env bash
# The GPU check that `cargo xtask device-pack` prepares: one command on a machine with a GPU
# (and none of the build tools) measures Kindling there against PyTorch. Every step has its own
# time limit, the whole check stops starting new steps after $BUDGET seconds, and everything
# goes to $OUT (summary.txt first). Without a GPU every GPU step ends with a clear error or a
# "no GPU" line, which is how it is dry-run on the CPU machines.
set -u
PACK=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$PWD/device-out}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
WORK=$(mktemp -d)
START=$(date +%s)
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LIMIT COMMAND...: runs it with a time limit, keeps its output in NAME.log, and
# copies its RESULT, ok/MISMATCH and error lines to the summary.
step() {
  local name=$1 limit=$2
  shift 2
  if [ $(( $(date +%s) - START )) -ge "$BUDGET" ]; then
    say "[$name] skipped: the check's ${BUDGET} s budget is spent"
    return
  fi
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && echo "timed out after ${limit} s" >> "$OUT/$name.log"
  say "[$name] rc=$rc in $(( $(date +%s) - t0 )) s: $*"
  grep -E "RESULT|: ok|MISMATCH|^error|caused by|no GPU|timed out|panicked" "$OUT/$name.log" | head -12 | sed 's/^/    /' | tee -a "$SUMMARY"
}

say "kindling device check, $(date -u +%FT%TZ), pack $PACK"
for flavour in wgpu cuda; do
  if [ -f "$PACK/kindling-$flavour.xz" ]; then
    { xz -dc "$PACK/kindling-$flavour.xz" 2>/dev/null ||
      python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())" "$PACK/kindling-$flavour.xz"; } > "$WORK/kindling-$flavour"
    chmod +x "$WORK/kindling-$flavour"
  else
    say "no kindling-$flavour in the pack"
  fi
done
K_WGPU=$WORK/kindling-wgpu
K_CUDA=$WORK/kindling-cuda
# The Vulkan loader the pack brings (the machine may have the driver's ICD but no loader).
export LD_LIBRARY_PATH=$PACK/vulkan${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$WORK}

GPU=0
if command -v nvidia-smi > /dev/null && nvidia-smi -L > "$OUT/gpus.txt" 2>&1; then
  GPU=1
  say "GPU: $(head -1 "$OUT/gpus.txt")"
  nvidia-smi --query-gpu=timestamp,name,utilization.gpu,memory.used,power.draw --format=csv -l 1 \
    > "$OUT/nvidia-smi.csv" 2>&1 &
  SAMPLER=$!
else
  say "no GPU: nvidia-smi is missing or lists no device; the GPU steps below must fail cleanly"
fi
PY=${PYTHON:-python3}

step check-device-flex 120 "$K_WGPU" check-device --device flex
step check-device-cuda 180 "$K_CUDA" check-device --device cuda:0
step check-device-wgpu 180 "$K_WGPU" check-device --device wgpu
step torch-step 240 "$PY" "$PACK/torch_step.py" cuda 10 64,256
if [ $GPU -eq 1 ]; then
  step bench-step-cuda-cifar 180 "$K_CUDA" bench step --model cifar --batch 64,256 --device cuda:0
  step bench-step-cuda-alexnet 180 "$K_CUDA" bench step --model alexnet --batch 64,256 --device cuda:0
  step bench-step-wgpu-cifar 180 "$K_WGPU" bench step --model cifar --batch 64,256 --device wgpu
  step bench-step-wgpu-alexnet 180 "$K_WGPU" bench step --model alexnet --batch 64,256 --device wgpu
  step bench-augment-cpu-p1 120 "$K_CUDA" bench augment --pipeline p1 --batch 256 --device flex
  step bench-augment-cuda-p1 120 "$K_CUDA" bench augment --pipeline p1 --batch 256 --device cuda:0
  step bench-augment-cpu-p2 120 "$K_CUDA" bench augment --pipeline p2 --batch 32 --device flex
  step bench-augment-cuda-p2 120 "$K_CUDA" bench augment --pipeline p2 --batch 32 --device cuda:0
  step bench-augment-wgpu-p1 120 "$K_WGPU" bench augment --pipeline p1 --batch 256 --device wgpu
else
  say "no GPU: the step and augmentation benchmarks on cuda and wgpu are skipped"
  step bench-step-cuda-cifar 60 "$K_CUDA" bench step --model cifar --batch 64 --steps 1 --device cuda:0
fi
step train-cuda 240 "$K_CUDA" train --device cuda:0 --epochs 3 --warmup-epochs 0 \
  --train-size 4096 --val-size 512 --quiet --out "$OUT/run-cuda"
# NCCL with world size 1: an all-reduce and a DDP step through NCCL. cudarc opens libnccl.so;
# PyTorch's wheels ship libnccl.so.2, so a link to it goes on the library path.
NCCL_DIR=$($PY -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib'))" 2>/dev/null)
if [ -n "$NCCL_DIR" ] && [ -f "$NCCL_DIR/libnccl.so.2" ]; then
  mkdir -p "$WORK/nccl" && ln -sf "$NCCL_DIR/libnccl.so.2" "$WORK/nccl/libnccl.so"
  export LD_LIBRARY_PATH=$WORK/nccl:$LD_LIBRARY_PATH
fi
step nccl-world-1 180 "$K_CUDA" launch --nproc-per-node 1 --engine nccl -- train \
  --device cuda:0 --epochs 1 --warmup-epochs 0 --train-size 512 --val-size 64 --quiet \
  --out "$OUT/run-nccl"
if [ $GPU -eq 1 ]; then
  kill "$SAMPLER" 2> /dev/null
  say "nvidia-smi samples: $(($(wc -l < "$OUT/nvidia-smi.csv") - 1)), highest utilization: $(cut -d, -f3 "$OUT/nvidia-smi.csv" | tr -dc '0-9\n' | sort -n | tail -1)%"
fi
say "done in $(( $(date +%s) - START )) s"
rm -rf "$WORK"
