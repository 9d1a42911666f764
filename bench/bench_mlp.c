/* MLP 784-256-128-100-10 training throughput; see bench_train.inc. */
#define BENCH_MODEL "mlp"
#include "bench_train.inc"
