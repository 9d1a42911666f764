/* The notes' CNN (conv-BN-ReLU-pool x2, dropout) training throughput with
 * Adam (lr 1e-3), the CNN's recipe; see bench_train.inc. */
#define BENCH_MODEL "cnn"
#define BENCH_OPTIM NB_OPTIM_ADAM
#define BENCH_LR 1e-3
#include "bench_train.inc"
