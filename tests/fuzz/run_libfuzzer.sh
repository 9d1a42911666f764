#!/bin/sh
# Run the libFuzzer builds of the fuzz targets for a bounded time.
#
#   tests/fuzz/run_libfuzzer.sh BINDIR SECONDS [TARGET...]
#
# BINDIR holds the libFuzzer binaries (fuzz_safetensors, ...: `make fuzz`
# builds them in $(BUILD)/libfuzzer); TARGETs default to all of them. Each
# target starts from its seed corpus tests/fuzz/corpus/NAME (read only) and
# its dictionary tests/fuzz/NAME.dict when there is one, keeps what it finds
# in BINDIR/corpus-NAME, and runs for SECONDS of wall time. The targets run
# side by side, as many at once as there are cores. A crash leaves its input
# in BINDIR/crash-NAME-* (copy it into tests/fuzz/corpus/NAME as a regression
# file once fixed). Prints one line per target: its executions and time.
# Exit status 0 when no target crashed, 1 otherwise, 2 on a usage error.
set -u

[ $# -ge 2 ] || { echo "usage: $0 BINDIR SECONDS [TARGET...]" >&2; exit 2; }
bindir=$1
seconds=$2
shift 2
case $seconds in '' | *[!0-9]*) echo "$0: SECONDS must be a whole number" >&2; exit 2 ;; esac
src=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || set -- $(cd "$bindir" && ls fuzz_* 2>/dev/null | grep -v '\.')
[ $# -gt 0 ] || { echo "$0: no fuzz targets in $bindir" >&2; exit 2; }

cores=$(nproc 2>/dev/null || echo 1)

# One target: libFuzzer's own log goes to BINDIR/NAME.log.
run_one() {
    t=$1
    name=${t#fuzz_}
    mkdir -p "$bindir/corpus-$name"
    dict=""
    [ -f "$src/$name.dict" ] && dict="-dict=$src/$name.dict"
    # shellcheck disable=SC2086
    "$bindir/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$bindir/crash-$name-" $dict \
        "$bindir/corpus-$name" "$src/corpus/$name" >"$bindir/$name.log" 2>&1
}

status=0
running=0
for t in "$@"; do
    [ -x "$bindir/$t" ] || { echo "$0: $bindir/$t is missing" >&2; exit 2; }
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$cores" ]; then
        wait
        running=0
    fi
done
wait

for t in "$@"; do
    name=${t#fuzz_}
    log="$bindir/$name.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    if grep -q '^Done [0-9]* runs' "$log" && ! grep -q -e '^==[0-9]*==ERROR' -e 'runtime error:' -e 'deadly signal' "$log"; then
        echo "$t: ${runs:-?} executions in ${secs:-?} s, no crash"
    else
        echo "$t: CRASH or error, see $log:" >&2
        grep -m 5 -e 'ERROR' -e 'runtime error' -e 'SUMMARY' -e 'Test unit written' "$log" >&2
        status=1
    fi
done
exit $status
