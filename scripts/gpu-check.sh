#!/usr/bin/env bash
# The GPU check: everything to know about this project on a GPU machine, printed in one run,
# with no build there (a GPU machine's time is short; build on any x86-64 Linux machine).
#
#   here:   cargo build --release -p xtask          # CUDA and wgpu are in the default build
#   carry:  target/release/xtask  xtask/reference/torch_reference.py  scripts/gpu-check.sh
#   there:  scripts/gpu-check.sh --xtask target/release/xtask \
#               --reference xtask/reference/torch_reference.py [--backend cuda|wgpu] [--out DIR]
#
# Prints: the machine; cold start (empty kernel cache) and warm start (second run) of the first
# training step; the four bench cases against PyTorch eager on the same card; kernel launches
# per training step, ours and PyTorch's; one epoch of a CelebA-shaped synthetic image folder
# (178×218 JPEGs, conv preset, batch 256) through `train image-folder`, and its `eval`.
# Needs: an NVIDIA driver, a CUDA toolkit (NVRTC and headers at $CUDA_PATH or /usr/local/cuda)
# and, for the PyTorch columns, python3 with torch. Each section runs even if one before failed.
set -u
xtask=target/release/xtask
reference=xtask/reference/torch_reference.py
backend=cuda
python=python3
out=${TMPDIR:-/tmp}/vae-gpu-check
images=20000
cases=mlp-b128,mlp-b1024,conv-b64,conv-b256
while [ $# -gt 0 ]; do
    case "$1" in
        --xtask) xtask=$2; shift 2 ;;
        --reference) reference=$2; shift 2 ;;
        --backend) backend=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --images) images=$2; shift 2 ;;
        --cases) cases=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -x "$xtask" ] || { echo "gpu-check: $xtask is not an executable (pass --xtask PATH)" >&2; exit 2; }
[ -f "$reference" ] || { echo "gpu-check: $reference is not a file (pass --reference PATH)" >&2; exit 2; }
mkdir -p "$out"
started=$SECONDS
failed=0
section() { printf '\n=== %s (%ds)\n' "$*" $((SECONDS - started)); }
run() { # run a command, print its exit status if it failed, go on
    "$@"; local rc=$?
    if [ $rc -ne 0 ]; then echo "(exit status $rc: $*)"; failed=$((failed + 1)); fi
    return 0
}

section "machine"
run nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
nproc; "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

# A kernel cache of our own, emptied first, so the first run is a true cold start.
export VAE_KERNEL_CACHE="$out/kernel-cache"
rm -rf "$VAE_KERNEL_CACHE"
section "cold start: first training step with an empty kernel cache (mlp-b128, conv-b256)"
run "$xtask" bench --backend "$backend" --cases mlp-b128,conv-b256 --quick
section "warm start: the same, second run (kernels and autotune results cached)"
run "$xtask" bench --backend "$backend" --cases mlp-b128,conv-b256 --quick

section "bench vs PyTorch eager, same card ($cases)"
run "$xtask" bench --backend "$backend" --cases "$cases" --vs-pytorch --python "$python" \
    --reference "$reference" --json "$out/bench.json"

section "kernel launches per training step (ours: cubecl's log; PyTorch: its profiler)"
run "$xtask" bench --backend "$backend" --cases "$cases" --launches --vs-pytorch \
    --python "$python" --reference "$reference"

section "CelebA-shaped image folder: $images synthetic 178x218 JPEGs, conv preset, 1 epoch"
if [ ! -f "$out/faces/$(printf '%06d' $((images - 1))).jpg" ]; then
    run "$xtask" bench --synthetic-images "$images" --synthetic-dir "$out/faces"
fi
rm -rf "$out/run"
t0=$SECONDS
run "$xtask" train image-folder --data-dir "$out/faces" --backend "$backend" \
    --epochs 1 --batch-size 256 --out "$out/run"
echo "train image-folder: $((SECONDS - t0)) s wall for $images images (cache build, one epoch, pictures)"
run "$xtask" eval --run "$out/run" --backend "$backend" --importance-samples 100 --limit 1000

section "done: $failed section(s) failed; outputs in $out"
