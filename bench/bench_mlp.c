/* MLP 784-256-128-100-10 training throughput with SGD (lr 0.05, momentum
 * 0.9); see bench_train.inc. */
#define BENCH_MODEL "mlp"
#define BENCH_OPTIM NB_OPTIM_SGD
#define BENCH_LR 0.05
#include "bench_train.inc"
