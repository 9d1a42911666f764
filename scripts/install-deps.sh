#!/bin/sh
# Install what nabla needs from Debian, only what is missing. Idempotent.
# As root: apt-get installs. As another user: prints the command to run.
#   scripts/install-deps.sh            build + test + demo dependencies
#   scripts/install-deps.sh --peer     also python3-torch (fixtures, peer benchmarks,
#                                      the PyTorch round trip of make test) and
#                                      libopenblas0 (bench_gemm's peer)
#   scripts/install-deps.sh --blas     also libopenblas-dev (make BLAS=openblas)
# The two options may be given together.
# The tests' fuzz runs need clang with libFuzzer (clang, libclang-rt-dev);
# without them those runs are skipped.
set -eu

PKGS="build-essential make zlib1g-dev libpng-dev dataset-fashion-mnist clang libclang-rt-dev"
# Open MPI: data-parallel training (src/dist, nabla train --distributed) and its tests.
PKGS="$PKGS libopenmpi-dev openmpi-bin"
# Text corpora of nabla textgen: 唐诗三百首 (tang300) and more Chinese, and English fortunes.
PKGS="$PKGS fortunes-zh fortunes"
for opt in "$@"; do
    case "$opt" in
        --peer) PKGS="$PKGS python3-torch python3-numpy libopenblas0" ;;
        --blas) PKGS="$PKGS libopenblas-dev" ;;
        *) echo "install-deps.sh: unknown option $opt (--peer, --blas)" >&2; exit 2 ;;
    esac
done

missing=""
for p in $PKGS; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "nabla needs these Debian packages:$missing" >&2
    echo "run:  sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi

echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
