/* The loops that GCC compiles for AVX-512, AVX2 and baseline x86-64 and
 * picks at load time (NB_CLONES, src/kernels/simd.h) promise the same bits
 * in every variant. The build's CLI runs the variant of this CPU, and
 * <build>/noclones/nabla (the Makefile, -DNB_NO_CLONES) the baseline one:
 * short trainings that go through those loops (batch-norm sums, dropout,
 * activations and softmax, the recurrent gates, im2col copies, every
 * optimizer) must write the same weights, byte for byte. */
#include "test.h"
#include <stdio.h>

TEST(clones_give_the_baseline_bits)
{
    static const char *runs[] = {
        "--model cnn --threads 2",
        "--model lstm --config 28,28,32,10,gru --optim rmsprop --momentum 0.5",
        "--model lstm --config 28,28,32,10,lstm --optim adagrad --lr 0.05",
        "--model mlp --config 784,64,10 --optim adamw --weight-decay 0.01",
        "--model mlp --config 784,64,10 --optim sgd --momentum 0.9 --weight-decay 1e-4",
        "--model sequential --config \"conv2d(1,4,3,stride=2) tanh avgpool2d(2) conv2d(4,8,3,padding=1,groups=2) "
        "sigmoid batchnorm2d(8) flatten dropout(0.3) linear(288,32) leakyrelu(0.1) linear(32,10) log_softmax(1)\"",
    };
    char cmd[1024], err[512];
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        for (int k = 0; k < 2; k++) {
            snprintf(cmd, sizeof cmd, "%s/%s train %s --limit-train 640 --epochs 1 --seed 3 --out %s", nbt_build_dir(),
                     k ? "noclones/nabla" : "nabla", runs[i], nbt_tmp_path(k ? "nc.safetensors" : "c.safetensors"));
            const int rc = nbt_shell(NULL, 0, err, sizeof err, "%s", cmd);
            CHECK_MSG(rc == 0, "%s: exit %d: %s", cmd, rc, err);
        }
        CHECK_MSG(nbt_same_files(nbt_tmp_path("c.safetensors"), nbt_tmp_path("nc.safetensors")),
                  "train %s: the weights differ between this CPU's clones and the baseline build", runs[i]);
    }
}
