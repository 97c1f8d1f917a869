#!/usr/bin/env bash
# The device calls of docs/GPU_SESSION.md, run on the GPU machine from the repository root. The
# CIFAR-10 files of a call are in $CARRY (default .carry; the 64 MiB a call carries holds two,
# xz-compressed), copied to $CIFAR by every command:
#   data             nothing else: a call that only brings its two files
#   check            pytest -m gpu (the full log: test_gpu.log; the side-by-side tests apart,
#                    test_gpu_streams.log), then a profile of the
#                    compiled solo loop and 2 and 4 of them on CUDA streams of one process
#                    (train_throughput_compiled_streams.json, Dynamo's graph breaks in its
#                    log); it writes the levers the training calls then
#                    take to $LEVER_FILE (first from the tests alone, so that a call cut
#                    short still leaves them; then with the benchmark): "stop: WHY" if a
#                    test of what Table 3's runs compute failed (real Caffe on CUDA, the
#                    data on CUDA: next and pack then train nothing; a failure elsewhere,
#                    another solver, the Python layer, is only noted), --no-cuda-graphs if
#                    the whole-step graph test failed, else
#                    --compile if every compiled CUDA test passed and the committed
#                    compiled solo loop trained 1.2x the committed solo loop's images/s
#                    (then also --pack K --pack-route streams if K compiled runs side by
#                    side trained 1.2x one solo run in this call's benchmark and their CUDA
#                    test passed), else none (EXTRA, when set, is used instead)
#   packs            the benchmark: packs of 1, 2, 4, 8 against solo runs, and a profile of the
#                    largest (JSON: train_throughput_pack.json; measured 2026-12-04)
#   compiled         the fused route: --compile inside the whole-step graph, a pack of 4 against
#                    solo (JSON: train_throughput_pack_compiled.json)
#   slices           the two 10-epoch slices on CIFAR-10 (all six files), solo and a pack of the
#                    4-lr grid, each projected to 350 epochs (train_throughput_slices.json;
#                    measured 2026-12-04)
#   next SECONDS     the next runs of Table 3's campaign (issue 19's order, then Table 4's
#                    all-cnn-c-augmented), pack after pack until SECONDS have passed (each
#                    with --deadline at what is left; none starts with under MIN_PACK_SECONDS,
#                    default 150, or once more than 3 files or 20 MiB wait to come back: a
#                    pack's up to 4 runs may add 4 tars of up to 12 MB); run folders under
#                    $CARRY_RUNS (default .carry-runs) are unpacked first (an unfinished run
#                    of an earlier lease)
#   pack SECONDS ROW OPTION...   runs of ROW (of any table) with these replicate options
#                    and the deadline
# Each training call returns one tar a run folder touched: a finished run without .solverstate
# and .rngstate (its final .caffemodel stays, for the cache), an unfinished one whole (to carry
# back); a tar holds at most 16 MiB, and a call returns at most 8 files.
# The machine keeps /tmp while it is warm (about 30 s after a call), so the calls go back to back.
# ALLCONV_COMMIT names the commit in the result files (the tree that travels has no .git;
# without it the training calls say so).
# LEVERS: the benchmark's levers (default --cuda-graphs --channels-last; set but empty: none);
# EXTRA: replicate options added to every training call (default: check's choice, in
# $LEVER_FILE; docs/GPU_SESSION.md). Every step has a time limit; a stage ends with
# status 0 after printing each step's own status (a step's failure is read in the logs, not
# mistaken for the call's own time limit).
# Dry run on the CPU: DEVICE="--device cpu" TINY=1 (tiny benchmark, slices and runs, and
# --pack 4: the packed path), with CIFAR=<the release> RESULTS=<a scratch folder>.
set -uo pipefail
: "${OUT:?run this on the device machine, where OUT is set (or set it for a dry run)}"
export PYTHONPATH=. PYTHONUNBUFFERED=1
CIFAR=${CIFAR:-/tmp/cifar} RESULTS=${RESULTS:-/tmp/results}
DEVICE=${DEVICE:-} LEVERS=${LEVERS---cuda-graphs --channels-last}
mkdir -p "$CIFAR" "$RESULTS/table3"
if [ -d "${CARRY:-.carry}" ]; then    # xz (or gzip): two raw files and the tree pass 64 MiB
    cp "${CARRY:-.carry}"/* "$CIFAR"/ && python3 - "$CIFAR" <<'EOF'
import gzip, lzma, shutil, sys
from pathlib import Path
for packed in Path(sys.argv[1]).iterdir():
    opener = {".xz": lzma.open, ".gz": gzip.open}.get(packed.suffix)
    if opener:
        with opener(packed) as src, open(packed.with_suffix(""), "wb") as dst:
            shutil.copyfileobj(src, dst)
        packed.unlink()
EOF
    ls "$CIFAR"
fi
LEVER_FILE=${LEVER_FILE:-/tmp/allconv-levers}   # check's choice, which next and pack then take
PACK_LOG=${PACK_LOG:-/tmp/allconv-pack.log}      # the last pack's output alone
EXTRA=${EXTRA-$(cat "$LEVER_FILE" 2>/dev/null)}
# the committed runs (finished: a resume keeps them) join the device's own, every table's; a
# dry run's smoke runs could not write beside their full rows
if [ -z "${TINY:-}" ]; then
    # (their times kept: train_pack tars only folders written after a pack's start)
    for table in results/table*/; do cp -rnp "$table" "$RESULTS/"; done
fi
if [ -n "${TINY:-}" ]; then
    BENCH_TINY="--batch 2 --iters 1 --warmup 0"
    SLICE_TINY="--slice-epochs 0.0002 --eval-limit 50"
    RUN_TINY="--epochs 0.0004 --batch-size 4 --eval-every 0.0002 --eval-limit 100 --pack 4"
else
    BENCH_TINY="" SLICE_TINY="" RUN_TINY=""
fi

next_pack() {        # the replicate arguments of the campaign's next pack, or nothing
    python3 - "$RESULTS" <<'EOF'
import sys
from harness.run_folder import row_folder, row_runs
from harness.specs import load_tables

C_ROWS = ["convpool-cnn-c", "model-c", "strided-cnn-c"]
B_ROWS = ["all-cnn-b", "convpool-cnn-b", "model-b", "strided-cnn-b"]
A_ROWS = ["all-cnn-a", "convpool-cnn-a", "model-a", "strided-cnn-a"]
ORDER = ([("all-cnn-c", "grid"), ("all-cnn-c", "seeds")]
         + [(row, "grid") for row in C_ROWS + B_ROWS + A_ROWS]
         + [(row, "seeds") for row in C_ROWS + B_ROWS + A_ROWS]
         + [("all-cnn-c-augmented", "grid")])      # Table 4, after Table 3 (issue 19)
specs = {s.name: s for table in load_tables().values() for s in table}
for row, kind in ORDER:
    spec, done, finished = specs[row], set(), {}
    for folder in row_runs(row_folder(sys.argv[1], spec.table, row)):
        settings, outcome = folder.settings, folder.outcome()
        if settings["epochs"] != spec.epochs or "missing" in outcome:
            continue
        key = (settings["lr"], settings["seed"])
        done.add(key)
        if "test_error" in outcome:
            finished[key] = outcome["test_error"]
    grid = [lr for lr in spec.training.lr_grid if (lr, 0) not in done]
    if kind == "grid" and grid:
        print(f"{row} --lr-search --seed 0")
        break
    at_zero = {lr: e for (lr, seed), e in finished.items() if seed == 0}
    if kind == "seeds" and at_zero:
        best = min(at_zero, key=at_zero.get)
        seeds = [s for s in (1, 2) if (best, s) not in done]
        if seeds:
            print(f"{row} --lr {best:g} --seed {','.join(map(str, seeds))}")
            break
EOF
}

table_of() {         # the table holding row $1
    python3 -c "import sys; from harness.specs import load_tables; print(next((t for t, rows in \
load_tables().items() if any(s.name == sys.argv[1] for s in rows)), 'table3'))" "$1"
}

benchmark() {        # $1: the JSON's (and log's) name; $2: its time limit; the rest: options
    local name=$1 limit=$2; shift 2
    # shellcheck disable=SC2086
    timeout -k 10 "$limit" python3 benchmarks/train_throughput.py "$@" --json "$OUT/$name.json" \
        $DEVICE $BENCH_TINY 2>&1 | tee "$OUT/$name.log"
    echo "benchmark: exit status ${PIPESTATUS[0]}"
}

choose_levers() {    # check's choice for the training calls, from its log: one line of EXTRA,
                     # or "stop: WHY" (then next and pack train nothing)
    python3 - "$OUT" <<'EOF'
import json, re, sys
from pathlib import Path
log = (Path(sys.argv[1]) / "test_gpu.log").read_text()
bad = re.findall(r"^(?:FAILED|ERROR) (\S+)", log, re.M)
whole_step = r"test_the_whole_step_as_one_cuda_graph_equals_the_eager_step\[dropout-o(n|ff)\]"
compiled = (r"test_compiled_loss_and_gradients_equal_eager\[cuda", r"\[dropout-on-compiled\]",
            r"test_the_loss_and_the_evaluation_trace_as_one_graph_each\[cuda-1-loss\]")
speed = (r"test_the_loss_and_the_evaluation_trace_as_one_graph_each",    # graphs and host
         r"test_one_host_sync_per_evaluation_on_cuda")                    # reads: speed only
# what Table 3's runs compute (real Caffe on CUDA, the data, packs and the evaluation on CUDA);
# another solver, the Python layer or Caffe's command line on CUDA is no stop for the campaign
campaign = ("tests/test_gpu.py", "tests/test_data.py", "tests/test_pack_runs.py",
            "tests/test_compile.py", "tests/test_evaluation.py")
wrong = [t for t in bad if not any(re.search(c, t) for c in (whole_step, *compiled, *speed))]
for test in (t for t in wrong if not t.startswith(campaign)):
    print(f"check: {test} failed (test_gpu.log); not on Table 3's path: noted, no stop",
          file=sys.stderr)
wrong = [t for t in wrong if t.startswith(campaign)]
if wrong:   # what the runs compute would be in doubt
    print(f"stop: {', '.join(wrong)} failed (test_gpu.log): train nothing, find out why")
elif any(re.search(whole_step, t) for t in bad):
    print("--no-cuda-graphs")           # the eager step is the one the CPU tests check
elif not re.search(r"\d+ passed.* in [\d.]+s", log):
    pass                                # the tests did not run to their end: no lever
elif not any(re.search(c, t) for c in compiled for t in bad):
    bench = Path("results/benchmarks")

    def solo(name):     # a committed benchmark's solo loop (not the baseline), images/s
        rows = json.loads((bench / name).read_text())["rows"]
        return next(r["train_images_per_s"] for r in rows if r["loop"] != "baseline")
    # 2026-12-04: compiled 109,692 against 59,846 images/s (graph + channels-last, both bf16)
    if solo("train_throughput_pack_compiled.json") >= 1.2 * solo("train_throughput_pack.json"):
        levers = ["--compile"]
        # this call's compiled runs on CUDA streams, side by side: the fastest K, at 1.2x a
        # solo run or more, if their tests (against solo runs, test_gpu_streams.log) passed
        try:
            out = Path(sys.argv[1])
            packs = json.loads((out / "train_throughput_compiled_streams.json").read_text())
            best = max((r for r in packs["packs"] if r["route"] == "streams"),
                       key=lambda r: r["vs_solo"])
            side = (out / "test_gpu_streams.log").read_text()
        except (OSError, ValueError, KeyError):
            best, side = None, ""
        passed = (re.search(r"\d+ passed.* in [\d.]+s", side)
                  and not re.search(r"^(FAILED|ERROR) ", side, re.M))
        if best and best["vs_solo"] >= 1.2 and passed:
            levers += ["--pack", str(best["members"]), "--pack-route", "streams"]
        print(" ".join(levers))
EOF
}

refuse_if_stopped() {  # check's "stop: WHY": no training call trains
    if [[ "${EXTRA:-}" == stop:* ]]; then echo "check said $EXTRA"; exit 0; fi
}

train_pack() {       # $1: --deadline seconds; the rest: ROW and replicate options
    local seconds=$1; shift
    [ -n "${ALLCONV_COMMIT:-}" ] || echo "gpu_session: ALLCONV_COMMIT is not set: the run" \
        "files will name no commit (write it into the command: docs/GPU_SESSION.md)"
    local start; start=$(date +%s)
    echo "replicate $* --deadline $seconds --resume"
    # a hang past the deadline is cut short, and what the runs checkpointed still comes back
    # shellcheck disable=SC2086
    timeout -k 10 $((seconds + 25)) python3 -m harness.cli $DEVICE $RUN_TINY ${EXTRA:-} "$@" \
        --data "$CIFAR" --out "$RESULTS" --deadline "$seconds" --resume --no-progress 2>&1 \
        | tee -a "$OUT/replicate.log" > "$PACK_LOG"
    local rc=${PIPESTATUS[0]}; echo "replicate: exit status $rc" | tee -a "$OUT/replicate.log"
    cat "$PACK_LOG"
    # a traceback exits 1, as a row that fails the paper does: told apart as 99
    if [ "$rc" = 1 ] && grep -q "^Traceback (most recent call last)" "$PACK_LOG"; then rc=99; fi
    local row=$1 table folder
    table=$(table_of "$row")
    for folder in "$RESULTS/$table/$row"/*/; do
        [ -f "$folder/run.json" ] || continue
        # only what this call trained: a folder written since it started
        [ "$(stat -c %Y "$folder/run.json")" -ge "$start" ] || \
            [ -n "$(find "$folder" -newermt "@$start" -print -quit)" ] || continue
        local name; name=$(basename "$folder")
        if [ -f "$folder/result.json" ]; then
            tar -C "$RESULTS" --exclude='*.solverstate' --exclude='*.rngstate' \
                -cf "$OUT/run-$row-$name.tar" "$table/$row/$name"
        else
            tar -C "$RESULTS" -cf "$OUT/run-$row-$name-unfinished.tar" "$table/$row/$name"
        fi
    done
    ls -la "$OUT"      # at most 8 files come back: the log and the tars (the table is
                       # rebuilt here from the run folders, tools/gpu_collect.py)
    return "$rc"
}

case "${1:-}" in
    data) exit 0 ;;
    check)
        nvidia-smi -L 2>/dev/null
        python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version())"
        # the device has no onnx: the export tests skip, as without the [onnx] extra
        # the steps' limits (180 + 110 + 200 s, each + 10 to kill) keep the call under 560 s
        timeout -k 10 180 python3 -m pytest -q -rfE --tb=short -m gpu -k "not side_by_side" \
            tests > "$OUT/test_gpu.log" 2>&1
        echo "pytest: exit status $?" >> "$OUT/test_gpu.log"
        choose_levers > "$LEVER_FILE"       # from the tests alone, if the call is cut short
        echo "levers from the tests: '$(cat "$LEVER_FILE")'"
        # runs side by side on CUDA streams, apart: their compiling cannot starve the above
        timeout -k 10 110 python3 -m pytest -q -rfE --tb=short -m gpu -k side_by_side tests \
            > "$OUT/test_gpu_streams.log" 2>&1
        echo "pytest: exit status $?" >> "$OUT/test_gpu_streams.log"
        # the compiled solo loop's profile (device against host time, top kernels), with
        # Dynamo's graph breaks logged: what stands between it and issue 20's 150 s; then 2
        # and 4 compiled solo loops on CUDA streams of one process, side by side
        # shellcheck disable=SC2086
        TORCH_LOGS=graph_breaks benchmark train_throughput_compiled_streams 200 --compile \
            $LEVERS --pack 2,4 --routes streams --profile --iters 100
        choose_levers > "$LEVER_FILE"
        tail -n 3 "$OUT/test_gpu_streams.log"
        tail -n 25 "$OUT/test_gpu.log"      # last, so that the call's output ends with it
        echo "levers for next and pack (in $LEVER_FILE): '$(cat "$LEVER_FILE")'"
        exit 0 ;;
    packs)
        # shellcheck disable=SC2086
        benchmark train_throughput_pack 320 $LEVERS --pack 1,2,4,8 --profile
        exit 0 ;;
    compiled)
        # shellcheck disable=SC2086
        benchmark train_throughput_pack_compiled 200 --compile $LEVERS --pack 4 --iters 100
        exit 0 ;;
    slices)
        # shellcheck disable=SC2086
        benchmark train_throughput_slices 540 $LEVERS --slices --data "$CIFAR" $SLICE_TINY
        exit 0 ;;
    next)
        # an earlier lease's unfinished runs, once (a stamp in RESULTS says so): the device
        # keeps an ignored folder between calls, and a second unpacking would put a run back
        # to its old checkpoint; the tars stay (a dry run here must not lose them)
        if [ -d "${CARRY_RUNS:-.carry-runs}" ]; then
            for tar in "${CARRY_RUNS:-.carry-runs}"/*.tar; do
                stamp="$RESULTS/.unpacked-$(basename "$tar")"
                if [ -f "$tar" ] && [ ! -e "$stamp" ]; then
                    tar -C "$RESULTS" -xf "$tar" && touch "$stamp"
                fi
            done
        fi
        # pack after pack until the deadline: one that ends early (a finished pack: status 0,
        # or 1 for a row that fails the paper) leaves its time to the next
        refuse_if_stopped
        end=$(( $(date +%s) + ${2:?seconds} )) last=""
        # a pack starts with MIN_PACK_SECONDS left (compiling takes about a minute), and
        # while what comes back stays under the device's 8 files and 64 MiB with its up to
        # 4 runs' tars on top (a run's tar: up to 12 MB)
        while left=$(( end - $(date +%s) )); [ "$left" -ge "${MIN_PACK_SECONDS:-150}" ] && \
                [ "$(find "$OUT" -type f | wc -l)" -le 3 ] && \
                [ "$(du -sm "$OUT" | cut -f1)" -le 20 ]; do
            if ! args=$(next_pack); then echo "next: choosing the next pack failed"; break; fi
            if [ -z "$args" ]; then echo "the campaign is done (Table 3, Table 4's row)"; break; fi
            # a pack whose runs do not count as done (smoke runs, a dry run's) is not retrained
            if [ "$args" = "$last" ]; then echo "next: $args again: stopping"; break; fi
            last=$args
            # shellcheck disable=SC2086
            train_pack "$left" $args
            rc=$?
            case $rc in
                0|1) ;;                              # finished (1: a row that fails the paper)
                2|99)  # an error or a crash: once, the same pack again without check's levers
                    # (--compile, --pack-route streams are the newest code), from its checkpoint
                    if [ -n "${EXTRA:-}" ] && [ -z "${retried:-}" ]; then
                        echo "next: replicate failed ($rc) with '$EXTRA': once more without it"
                        EXTRA="" retried=1 last=""
                    else
                        break
                    fi ;;
                *) break ;;                          # the deadline (3), a signal, a timeout
            esac
        done
        exit 0 ;;
    pack) refuse_if_stopped; seconds=${2:?seconds}; shift 2; train_pack "$seconds" "$@"; exit 0 ;;
    *) echo "usage: gpu_session.sh data|check|packs|compiled|slices|next SECONDS|pack SECONDS ROW OPTION..." >&2
       exit 2 ;;
esac
