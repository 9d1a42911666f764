#!/usr/bin/env bash
# make bench: run every benchmark in BUILD/bench/ and, for bench_X with a peer
# script bench/torch_X.py, the PyTorch peer (Debian's python3-torch, run by
# /usr/bin/python3), then print a table of nabla beside PyTorch.
#   scripts/bench.sh [BUILD]
# Every program prints its result on its last stdout line as "...: VALUE UNIT".
# OpenBLAS reads OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE), which changes
# PyTorch's speed; when either is set the peer runs twice: with the environment
# as it is and with both unset. The environment is never changed otherwise.
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

rows=()     # name|nabla|unit|peer label|peer value
status=0
shopt -s nullglob
for bin in "$BUILD"/bench/*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    name=$(basename "$bin")
    echo "== $name"
    out=$("$bin") || { echo "$name failed" >&2; status=1; continue; }
    echo "$out"
    res=$(printf '%s\n' "$out" | result_of)
    # the peer: bench/torch_X.py, or the shared training peer for zoo models
    peer=("bench/torch_${name#bench_}.py")
    case "$name" in bench_mlp|bench_cnn) peer=(bench/torch_train.py --model "${name#bench_}") ;; esac
    [ -f "${peer[0]}" ] || { rows+=("$name|$res||"); continue; }
    if [ "$have_torch" = 0 ]; then
        echo "PyTorch not installed; skipping peer (${peer[*]} needs python3-torch: scripts/install-deps.sh --peer)"
        rows+=("$name|$res|not installed|")
        continue
    fi
    label="PyTorch"
    [ "$openblas_env" = 1 ] && label="PyTorch (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-unset})"
    echo "== ${peer[*]} ($label)"
    pout=$("$PY" "${peer[@]}") && echo "$pout" && rows+=("$name|$res|$label|$(printf '%s\n' "$pout" | result_of)")
    if [ "$openblas_env" = 1 ]; then
        label="PyTorch (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE unset)"
        echo "== ${peer[*]} ($label)"
        pout=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" "${peer[@]}") && echo "$pout" &&
            rows+=("$name|$res|$label|$(printf '%s\n' "$pout" | result_of)")
    fi
done

echo
echo "== nabla beside PyTorch ($(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'))"
printf '%-12s %-18s %-52s %-18s %s\n' benchmark nabla peer "peer result" nabla/peer
for r in "${rows[@]}"; do
    IFS='|' read -r name res label pres <<<"$r"
    [ -n "$label" ] || continue
    ratio="-"
    nv=${res%% *} nu=${res#* } pv=${pres%% *} pu=${pres#* }
    if [ -n "$pres" ] && [ "$nu" = "$pu" ]; then
        ratio=$(awk -v a="$nv" -v b="$pv" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
    fi
    printf '%-12s %-18s %-52s %-18s %s\n' "$name" "$res" "$label" "${pres:--}" "$ratio"
done
exit $status
