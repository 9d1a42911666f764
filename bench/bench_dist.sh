#!/bin/sh
# Data-parallel scaling of `nabla train --distributed` on this machine: the
# training images per second (evaluation excluded, as the epoch line reports
# them) of one process, of 1 MPI rank and of 2 MPI ranks, one thread each,
# the same global batch; the scaling efficiency (2 ranks / (2 x 1 process));
# the bytes all-reduced per step; the time the 2 ranks spend communicating;
# 2 ranks with the all-reduce in buckets of BUCKET KiB started during the
# backward (--dist-bucket, nabla's default 64) and with one all-reduce after
# it (--dist-bucket 0; BUCKET 0 runs only that). The efficiency is the
# bucketed run's.
#   bench/bench_dist.sh [BUILD [MODEL [IMAGES [BATCH [BUCKET]]]]]
#     defaults: build mlp 25600 256 64 (cnn: 3200 images is plenty)
# The last line is "bench_dist MODEL 2-rank scaling efficiency: N %".
# Needs nabla built with MPI and mpirun (scripts/install-deps.sh); skipped
# (exit 0, saying so) without them. The cores are shared with whatever else
# runs: on a busy machine the ranks wait for each other and the efficiency
# drops, so read it beside the load average printed first.
set -u
BUILD=${1:-build}
MODEL=${2:-mlp}
IMAGES=${3:-25600}
BATCH=${4:-256}
BUCKET=${5:-64}
NABLA=$BUILD/nabla

if ! command -v mpirun >/dev/null 2>&1; then
    echo "bench_dist: mpirun not found (install openmpi-bin: scripts/install-deps.sh); skipped"
    exit 0
fi
# mpirun refuses root unless told; harmless for other users
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="mpirun --oversubscribe --bind-to none"
ARGS="train --model $MODEL --limit-train $IMAGES --batch $BATCH --epochs 1 --threads 1 --seed 1"

out1=$("$NABLA" $ARGS) || { echo "bench_dist: nabla train failed" >&2; exit 1; }
if ! outr1=$($MPIRUN -np 1 "$NABLA" $ARGS --distributed 2>&1); then
    case "$outr1" in
        *"built without MPI"*) echo "bench_dist: nabla was built without MPI (make MPI=1); skipped"; exit 0 ;;
    esac
    echo "$outr1" >&2
    exit 1
fi
outr2=$($MPIRUN -np 2 "$NABLA" $ARGS --distributed --dist-bucket 0) || { echo "bench_dist: 2 ranks failed" >&2; exit 1; }
outo2=
if [ "$BUCKET" != 0 ]; then
    outo2=$($MPIRUN -np 2 "$NABLA" $ARGS --distributed --dist-bucket "$BUCKET") ||
        { echo "bench_dist: 2 ranks with --dist-bucket failed" >&2; exit 1; }
fi

# "epoch 1/1 ... img/s 41234 ..." -> 41234
ips() { sed -n 's/^epoch .* img\/s \([0-9][0-9]*\) .*/\1/p' | tail -n 1; }
p1=$(printf '%s\n' "$out1" | ips)
r1=$(printf '%s\n' "$outr1" | ips)
r2=$(printf '%s\n' "$outr2" | ips)
o2=$(printf '%s\n' "$outo2" | ips)
echo "== bench_dist: $MODEL, global batch $BATCH, $IMAGES images, 1 thread per rank; load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "1 process:       $p1 img/s"
echo "1 rank (mpirun): $r1 img/s"
echo "2 ranks, one all-reduce after the backward: $r2 img/s"
[ -n "$outo2" ] && echo "2 ranks, all-reduce overlapped in $BUCKET KiB buckets: $o2 img/s"
printf '%s\n' "$outr2" | sed -n 's/^distributed over 2 ranks: .*, \([0-9]*\) bytes of gradients.*/all-reduced per step: \1 bytes of gradients (one all-reduce, or one per bucket with --dist-bucket) + 24 bytes (loss and failure agreement)/p'
printf '%s\n' "$outr2" | sed -n 's/^distributed: /2 ranks: /p'
printf '%s\n' "$outo2" | sed -n 's/^distributed: /2 ranks overlapped: /p'
awk -v a="${o2:-$r2}" -v b="$p1" -v m="$MODEL" \
    'BEGIN { if (b > 0) printf "bench_dist %s 2-rank scaling efficiency: %.1f %%\n", m, 100 * a / (2 * b); else exit 1 }'
