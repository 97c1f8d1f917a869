#!/usr/bin/env bash
# The device calls of docs/GPU_SESSION.md, run on the GPU machine from the repository root with
# the CIFAR-10 files of this call in .carry/ (the 64 MiB a call carries holds two of them):
#   stage1           files 1-2; pytest -m gpu; the bf16 benchmark against the baseline
#   stage2           files 3-4
#   stage3 SECONDS   file 5 and the test file; replicate all-cnn-c with the benchmark's fastest
#                    levers, stopping at the first checkpoint past SECONDS of training
#   resume SECONDS   the same run continued from its last checkpoint
# The machine keeps /tmp while it is warm (about 30 s after a call), so the calls go back to back.
# ALLCONV_COMMIT names the commit in the result files (the tree that travels has no .git).
# CARRY names the carried folder of CIFAR files (default .carry).
# EXTRA adds replicate options (for a dry run on the CPU: EXTRA="--device cpu --epochs 0.02").
set -uo pipefail
: "${OUT:?run this on the device machine, where OUT is set}"
export PYTHONPATH=. PYTHONUNBUFFERED=1
CIFAR=/tmp/cifar RESULTS=/tmp/results BENCH=/tmp/train_throughput.json
mkdir -p "$CIFAR" && cp "${CARRY:-.carry}"/* "$CIFAR"/ && ls "$CIFAR"

fastest_levers() {   # replicate's flags for the fastest bf16 lever set that stage1 measured
    python3 - "$BENCH" <<'EOF'
import json, sys
flags = {"eager": "", "channels-last": "--channels-last",
         "compile+channels-last": "--compile --channels-last",
         "cuda-graphs+channels-last": "--cuda-graphs --channels-last"}
try:
    rows = [r for r in json.load(open(sys.argv[1]))["rows"] if "ratio" in r]
    print(flags[max(rows, key=lambda r: r["train_images_per_s"])["loop"]])
except (OSError, KeyError, ValueError):
    print(flags["cuda-graphs+channels-last"])
EOF
}

train() {            # $1: seconds of training; $2: --resume or nothing
    local levers=${LEVERS-$(fastest_levers)}
    echo "replicate all-cnn-c $levers --time-limit $1 $2 ${EXTRA:-}"
    python3 -m harness.cli all-cnn-c --data "$CIFAR" --out "$RESULTS" --time-limit "$1" \
        --no-progress $levers $2 ${EXTRA:-} 2>&1 | tee "$OUT/replicate.log"
    python3 - "$RESULTS"/table3/all-cnn-c/*/metrics.jsonl <<'EOF'
import json, sys
for path in sys.argv[1:]:
    print(path)
    for r in map(json.loads, open(path)):
        if "test_error" in r:
            print(f"epoch {r['epoch']:7.2f}  lr {r['lr']:.4g}  train loss {r['train_loss']:.4f}  "
                  f"test error {r['test_error']:6.2f} %  {r['images_per_s']:9,.0f} img/s  "
                  f"{r['seconds']:7.1f} s  dead {r['dead_units']}")
EOF
    for run in "$RESULTS"/table3/all-cnn-c/*/; do   # one tar a run: a returned file holds 16 MB
        tar -C "$RESULTS" -cf "$OUT/run-$(basename "$run").tar" "table3/all-cnn-c/$(basename "$run")"
    done
    cp "$RESULTS"/table3/all-cnn-c.json "$RESULTS"/table3/README.md "$OUT"/ 2>/dev/null
    return 0
}

case "${1:-}" in
    stage1)
        nvidia-smi -L
        python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version())"
        python3 -m pytest -q -m gpu tests 2>&1 | tee "$OUT/test_gpu.log"
        python3 benchmarks/train_throughput.py --precision bf16 --sweep \
            --levers eager,channels-last,cuda-graphs+channels-last --json "$BENCH" 2>&1 \
            | tee "$OUT/train_throughput.log"
        cp "$BENCH" "$OUT"/ ;;
    stage2) ;;
    stage3) train "${2:?seconds}" "" ;;
    resume) train "${2:?seconds}" --resume ;;
    *) echo "usage: gpu_session.sh stage1|stage2|stage3 SECONDS|resume SECONDS" >&2; exit 2 ;;
esac
