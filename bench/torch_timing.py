"""The timing shared by the PyTorch training peers (torch_train.py,
torch_lstm.py), the same as bench/bench_train.inc and bench_lstm.c: the
common arguments, a warm-up, then rounds of --seconds each, the median."""
import argparse
import resource
import statistics
import sys
import time


def arguments(description):
    """An argument parser with --batch, --threads, --seconds and --rounds."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    return ap


def median_rate(step, batch, seconds, rounds, unit, warmup_steps):
    """Runs step() for a warm-up (0.3 s and at least warmup_steps), then
    `rounds` rounds of `seconds`; prints each round on stderr and returns
    the median of batch * steps / seconds."""
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.3 or k < warmup_steps:
        step()
        k += 1
    rates = []
    for rd in range(rounds):
        steps, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            step()
            steps += 1
            t = time.perf_counter() - t0
            if t >= seconds:
                break
        rates.append(steps * batch / t)
        cpu = 1e3 * (time.process_time() - c0) / steps  # all threads: steadier on shared cores
        print(f"  round {rd + 1}: {steps} steps, {rates[-1]:.0f} {unit}, {1e3 * t / steps:.2f} ms/step, "
              f"{cpu:.2f} CPU ms/step", file=sys.stderr)
    return statistics.median(rates)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
