/* The notes' CNN (conv-BN-ReLU-pool x2, dropout) training throughput; see bench_train.inc. */
#define BENCH_MODEL "cnn"
#include "bench_train.inc"
