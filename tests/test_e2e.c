/* End to end: the Fashion-MNIST MLP learns from 5,000 real images in one epoch. */
#include "test.h"

TEST(mlp_learns_fashion_mnist_in_one_epoch)
{
    nb_dataset *train = NULL, *test = NULL;
    CHECK_OK(nb_fashion_mnist_load(NULL, 1, &train));
    CHECK_OK(nb_fashion_mnist_load(NULL, 0, &test));
    nb_dataset_truncate(train, 5000);
    nb_ctx *ctx = nb_ctx_new(1);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("mlp", NULL, nb_ctx_rng(ctx), &m));
    const nb_optim_opts adam = nb_optim_defaults(NB_OPTIM_ADAM); /* the recipe: Adam, lr 1e-3 */
    nb_optimizer *o = nb_optim_new(m, &adam);
    nb_loader *l = NULL;
    CHECK_OK(nb_loader_new(train, 64, 1, 0, 1, &l));
    nb_batch b;
    int steps = 0;
    for (;;) {
        nb_ctx_reset(ctx);
        CHECK_OK(nb_loader_next(l, ctx, &b));
        if (!b.n) break;
        nb_tensor *loss = nb_cross_entropy(ctx, nb_model_forward(m, ctx, b.x), b.y, NULL, -100, NB_REDUCTION_MEAN);
        CHECK_MSG(loss && isfinite(nb_tensor_item(loss)), "step %d: %s", steps, nb_last_error());
        nb_model_zero_grad(m);
        CHECK_OK(nb_backward(ctx, loss));
        CHECK_OK(nb_optim_step(o));
        steps++;
    }
    CHECK(steps == 79);
    /* accuracy on the whole test set, without the tape */
    nb_loader_free(l);
    CHECK_OK(nb_loader_new(test, 1000, 0, 0, 0, &l));
    nb_set_grad_enabled(ctx, 0);
    int64_t correct = 0, seen = 0;
    for (;;) {
        nb_ctx_reset(ctx);
        CHECK_OK(nb_loader_next(l, ctx, &b));
        if (!b.n) break;
        nb_tensor *pred = nb_argmax(ctx, nb_model_forward(m, ctx, b.x), 1);
        CHECK(pred);
        for (int64_t i = 0; i < b.n; i++) correct += (int32_t)pred->data[i] == b.y[i];
        seen += b.n;
    }
    double acc = (double)correct / (double)seen;
    CHECK(seen == 10000);
    /* PyTorch with this recipe reaches 0.59-0.65 (seeds 0-2) */
    CHECK_MSG(acc > 0.50, "test accuracy %.4f after one epoch on 5,000 images (chance is 0.10)", acc);
    nb_loader_free(l);
    nb_optim_free(o);
    nb_model_free(m);
    nb_ctx_free(ctx);
    nb_dataset_free(train);
    nb_dataset_free(test);
}

/* The notes' CNN (issue 3): torch's names and sizes, learns from 5,000 images
 * in one epoch, and BatchNorm's running statistics move in train mode only. */
TEST(cnn_learns_fashion_mnist_in_one_epoch)
{
    nb_dataset *train = NULL, *test = NULL;
    CHECK_OK(nb_fashion_mnist_load(NULL, 1, &train));
    CHECK_OK(nb_fashion_mnist_load(NULL, 0, &test));
    nb_dataset_truncate(train, 5000);
    nb_dataset_truncate(test, 2000);
    nb_ctx *ctx = nb_ctx_new(1);
    nb_model *m = NULL;
    CHECK_OK(nb_model_build("cnn", NULL, nb_ctx_rng(ctx), &m));
    const char *names[] = {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                           "1.num_batches_tracked", "4.weight", "4.bias", "5.weight", "5.bias",
                           "5.running_mean", "5.running_var", "5.num_batches_tracked", "9.weight",
                           "9.bias", "12.weight", "12.bias"};
    CHECK(m->nparams == 18);
    int64_t trainable = 0;
    for (int i = 0; i < 18; i++) {
        CHECK_MSG(!strcmp(m->params[i].name, names[i]), "param %d is %s", i, m->params[i].name);
        if (!m->params[i].buffer) trainable += nb_tensor_numel(&m->params[i].t);
    }
    CHECK(trainable == 421834);
    int rm = nb_model_find_param(m, "1.running_mean");
    nb_optimizer *o = nb_sgd_new(m, (nb_sgd_opts){.lr = 0.05f, .momentum = 0.9f});
    nb_loader *l = NULL;
    CHECK_OK(nb_loader_new(train, 64, 1, 0, 1, &l));
    nb_batch b;
    for (int step = 0;; step++) {
        nb_ctx_reset(ctx);
        CHECK_OK(nb_loader_next(l, ctx, &b));
        if (!b.n) break;
        nb_tensor *loss = nb_cross_entropy(ctx, nb_model_forward(m, ctx, b.x), b.y, NULL, -100, NB_REDUCTION_MEAN);
        CHECK_MSG(loss && isfinite(nb_tensor_item(loss)), "step %d: %s", step, nb_last_error());
        nb_model_zero_grad(m);
        CHECK_OK(nb_backward(ctx, loss));
        CHECK_OK(nb_optim_step(o));
    }
    CHECK(m->params[rm].t.data[0] != 0.0f);  /* running mean moved from its zero start */
    float running[32];
    memcpy(running, m->params[rm].t.data, sizeof running);
    nb_loader_free(l);
    CHECK_OK(nb_loader_new(test, 500, 0, 0, 0, &l));
    nb_model_train(m, 0);
    nb_set_grad_enabled(ctx, 0);
    int64_t correct = 0, seen = 0;
    for (;;) {
        nb_ctx_reset(ctx);
        CHECK_OK(nb_loader_next(l, ctx, &b));
        if (!b.n) break;
        nb_tensor *pred = nb_argmax(ctx, nb_model_forward(m, ctx, b.x), 1);
        CHECK(pred);
        for (int64_t i = 0; i < b.n; i++) correct += (int32_t)pred->data[i] == b.y[i];
        seen += b.n;
    }
    CHECK(memcmp(running, m->params[rm].t.data, sizeof running) == 0);  /* eval leaves them */
    double acc = (double)correct / (double)seen;
    /* one epoch of Adam at lr 1e-3 ends anywhere in 0.57-0.71 (context seeds
     * 1-4; 0.62 with this one) and moves with rounding (the order of a sum):
     * well above chance (0.1) is what this checks */
    CHECK_MSG(acc > 0.50, "CNN test accuracy %.4f after one epoch on 5,000 images", acc);
    nb_loader_free(l);
    nb_optim_free(o);
    nb_model_free(m);
    nb_ctx_free(ctx);
    nb_dataset_free(train);
    nb_dataset_free(test);
}
