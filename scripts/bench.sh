#!/usr/bin/env bash
# make bench: run every benchmark in BUILD/bench/ and, for bench_X with a peer
# script bench/torch_X.py, the PyTorch peer (Debian's python3-torch, run by
# /usr/bin/python3), then print a table of nabla beside its peers.
#   scripts/bench.sh [BUILD]
# Every program prints its result on its last stdout line as "...: VALUE UNIT".
# A program that runs its peer itself (bench_gemm loads OpenBLAS) prints the
# peer's result on a line "peer LABEL: VALUE UNIT"; a training benchmark and
# its peer print their peak memory as "... peak RSS: VALUE MiB", shown in the
# table beside the speed. The training benchmarks (bench_mlp, bench_cnn) and
# their peer alternate NABLA_BENCH_PAIRS times (default 3), and the table
# shows each side's median.
# OpenBLAS reads OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE), which changes
# PyTorch's speed; when either is set the peer runs twice: with the environment
# as it is and with both unset. bench_gemm alone runs with
# OPENBLAS_CORETYPE=SkylakeX: OpenBLAS's AVX-512 kernels, whatever its CPU
# detection would pick; the environment is never changed otherwise.
set -u
BUILD=${1:-build}
PY=/usr/bin/python3
cd "$(dirname "$0")/.." || exit 1

have_torch=0
if [ -x "$PY" ] && "$PY" -c 'import torch' 2>/dev/null; then have_torch=1; fi
openblas_env=0
if [ -n "${OPENBLAS_CORETYPE+x}" ] || [ -n "${OPENBLAS_L2_SIZE+x}" ]; then openblas_env=1; fi

# "...: 41234 img/s" -> "41234 img/s"
result_of() { tail -n 1 | sed -n 's/.*: *\([0-9][0-9.eE+]*\) \(.*\)$/\1 \2/p'; }
# "peer OpenBLAS SkylakeX ...: 250.0 GFLOP/s" -> "OpenBLAS SkylakeX ...|250.0 GFLOP/s"
peer_of() { sed -n 's/^peer \(.*\): *\([0-9][0-9.eE+]*\) \(.*\)$/\1|\2 \3/p' | tail -n 1; }
# "nabla cnn peak RSS: 253.9 MiB" -> "253.9"
rss_of() { sed -n 's/.*peak RSS: *\([0-9][0-9.]*\) MiB$/\1/p' | tail -n 1; }

rows=()     # name|nabla value unit|peer label|peer value unit|nabla RSS|peer RSS
vgg_lines=()
status=0
# The training benchmarks and their peer alternate PAIRS times (nabla, peer,
# nabla, ...) and each side's median counts: a busy moment of the shared
# machine then slows both sides instead of whichever ran in it.
PAIRS=${NABLA_BENCH_PAIRS:-3}
# the median of the numbers on stdin, one per line
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# "41234 img/s" lines -> "41234 img/s" with the median value
median_result() {
    local lines unit
    lines=$(cat)
    [ -n "$lines" ] || return
    unit=$(printf '%s\n' "$lines" | head -n 1 | cut -d' ' -f2-)
    echo "$(printf '%s\n' "$lines" | cut -d' ' -f1 | median) $unit"
}
shopt -s nullglob
# bench_one NAME BIN [ARGS...]: run BIN ARGS, then its peer with the same ARGS.
bench_one() {
    local name=$1 bin=$2
    shift 2
    local base=${bin##*/} reps=1
    case "$base" in bench_mlp|bench_cnn) reps=$PAIRS ;; esac
    local envs=()
    [ "$name" = bench_gemm ] && envs=(OPENBLAS_CORETYPE=SkylakeX)
    # the peer: bench/torch_X.py with the same arguments, or the shared
    # training peer for zoo models
    local peer=("bench/torch_${base#bench_}.py" "$@")
    case "$base" in bench_mlp|bench_cnn) peer=(bench/torch_train.py --model "${base#bench_}") ;; esac
    local labels=() peer_envs=()
    if [ -f "${peer[0]}" ] && [ "$have_torch" = 1 ]; then
        if [ "$openblas_env" = 1 ]; then
            labels=("PyTorch (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-unset})" "PyTorch (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE unset)")
            peer_envs=("" "-u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE")
        else
            labels=("PyTorch")
            peer_envs=("")
        fi
    fi
    local r p out pout res="" rss="" inpeer="" pres=() prss=()
    for ((r = 1; r <= reps; r++)); do
        if [ "$reps" -gt 1 ]; then echo "== $name (run $r of $reps)"; else echo "== $name"; fi
        out=$(env "${envs[@]}" "$bin" "$@") || { echo "$name failed" >&2; status=1; return; }
        echo "$out"
        # VGG11 measures two sizes and two passes: its per-size lines go under the table
        [ "$name" = bench_vgg ] && vgg_lines+=("$(printf '%s\n' "$out" | grep ' ms/img')")
        res+="$(printf '%s\n' "$out" | result_of)"$'\n'
        rss=$(printf '%s\n' "$out" | rss_of)
        inpeer=$(printf '%s\n' "$out" | peer_of)
        [ -z "$inpeer" ] || break
        for p in "${!labels[@]}"; do
            echo "== ${peer[*]} (${labels[$p]})"
            # shellcheck disable=SC2086 # peer_envs holds separate env options
            pout=$(env ${peer_envs[$p]} "$PY" "${peer[@]}") || continue
            echo "$pout"
            [ "$name" != bench_vgg ] || vgg_lines+=("$(printf '%s\n' "$pout" | grep ' ms/img')")
            pres[$p]+="$(printf '%s\n' "$pout" | result_of)"$'\n'
            prss[$p]=$(printf '%s\n' "$pout" | rss_of)
        done
    done
    res=$(printf '%s' "$res" | median_result)
    if [ -n "$inpeer" ]; then rows+=("$name|$res|$inpeer||"); return; fi
    if [ ! -f "${peer[0]}" ]; then rows+=("$name|$res|||$rss|"); return; fi
    if [ "$have_torch" = 0 ]; then
        echo "PyTorch not installed; skipping peer (${peer[*]} needs python3-torch: scripts/install-deps.sh --peer)"
        rows+=("$name|$res|not installed||$rss|")
        return
    fi
    for p in "${!labels[@]}"; do
        [ -n "${pres[$p]:-}" ] || continue
        rows+=("$name|$res|${labels[$p]}$([ "$reps" -gt 1 ] && echo ", median of $reps")|$(printf '%s' "${pres[$p]}" | median_result)|$rss|${prss[$p]}")
    done
}

for bin in "$BUILD"/bench/*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    name=$(basename "$bin")
    case "$name" in
    # the LSTM benchmark has two models: rows of an image and a character model
    bench_lstm) for m in rows char; do bench_one "bench_lstm_$m" "$bin" --model "$m"; done ;;
    *) bench_one "$name" "$bin" ;;
    esac
done

# data parallelism over MPI: 1 and 2 ranks (skips itself without MPI)
echo "== bench_dist"
bench/bench_dist.sh "$BUILD" || status=1

echo
# a / b as "1.23x", or "-"
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-" }'; }

echo "== nabla beside its peers ($(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'))"
printf '%-16s %-18s %-64s %-18s %-10s | %-26s %s\n' benchmark nabla peer "peer result" nabla/peer \
    "peak RSS MiB (nabla/peer)" "RSS nabla/peer"
for r in "${rows[@]}"; do
    IFS='|' read -r name res label pres nrss prss <<<"$r"
    [ -n "$label" ] || continue
    ratio="-"
    nv=${res%% *} nu=${res#* } pv=${pres%% *} pu=${pres#* }
    if [ -n "$pres" ] && [ "$nu" = "$pu" ]; then ratio=$(ratio_of "$nv" "$pv"); fi
    mem="-" mratio="-"
    if [ -n "$nrss" ]; then mem="$nrss / ${prss:--}" mratio=$(ratio_of "$nrss" "$prss"); fi
    printf '%-16s %-18s %-64s %-18s %-10s | %-26s %s\n' "$name" "$res" "$label" "${pres:--}" "$ratio" \
        "$mem" "$mratio"
done
if [ ${#vgg_lines[@]} -gt 0 ]; then
    echo
    echo "== VGG11 per size (ms per image, lower is better; issue 6 targets >= 3x PyTorch, forward >= 50% of peak)"
    printf '%s\n' "${vgg_lines[@]}"
fi
exit $status
