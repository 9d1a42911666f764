/* Checkpoints: exact resume (N steps, save, load into fresh objects, M more
 * steps == N + M uninterrupted steps, bit for bit), refusals that leave the
 * objects untouched, and crash safety (a writer killed at random points, a
 * full disk). */
#include "test.h"
#include "nabla/checkpoint.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NDATA 100
#define BATCH 16 /* 7 batches an epoch, the last of 4 */

/* nbt_tmpdir()/name, in one of four rotating buffers */
static const char *tmp_file(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *p = bufs[k++ & 3];
    snprintf(p, 512, "%s/%s", nbt_tmpdir(), name);
    return p;
}

static float data_x[NDATA * 64];
static int32_t data_y[NDATA];
static nb_dataset data = {NDATA, 1, 8, 8, data_x, data_y, 10};

static void make_data(void)
{
    nb_rng r;
    nb_rng_seed(&r, 99);
    for (int i = 0; i < NDATA; i++) {
        data_y[i] = (int32_t)nb_rng_below(&r, 10);
        for (int k = 0; k < 64; k++) data_x[i * 64 + k] = nb_rng_uniform(&r) * 0.5f + (k % 10 == data_y[i]) * 0.5f;
    }
}

/* A training setup as a program would build it: the CNN (BatchNorm buffers,
 * dropout drawing from the context's generator), an optimizer with a
 * no-decay group, a warm-up + cosine schedule and a shuffling loader. */
typedef struct run {
    nb_ctx *ctx;
    nb_model *m;
    nb_optimizer *o;
    nb_schedule *s;
    nb_loader *l;
} run;

static int run_new(run *r, const nb_optim_opts *opts, uint64_t init_seed)
{
    memset(r, 0, sizeof *r);
    nb_schedule_opts so;
    r->ctx = nb_ctx_new(init_seed);
    if (!r->ctx || nb_model_build("cnn", "1,8,8,4,8,16,10", nb_ctx_rng(r->ctx), &r->m)) return -1;
    nb_rng_seed(nb_ctx_rng(r->ctx), 5); /* the dropout stream, as if seeded once */
    if (!(r->o = nb_optim_new(r->m, opts)) || nb_optim_no_decay_for_1d(r->o)) return -1;
    if (nb_schedule_parse("warmup:2+cosine", 8, &so) || !(r->s = nb_schedule_new(r->o, &so))) return -1;
    return nb_loader_new(&data, BATCH, 1, 0, 11, &r->l);
}

static void run_free(run *r)
{
    nb_loader_free(r->l);
    nb_schedule_free(r->s);
    nb_optim_free(r->o);
    nb_model_free(r->m);
    nb_ctx_free(r->ctx);
}

static nb_checkpoint ck(run *r) { return (nb_checkpoint){r->m, r->o, r->s, nb_ctx_rng(r->ctx), r->l}; }

/* n training steps; the schedule steps after every 3rd optimizer step. */
static int train(run *r, int n)
{
    nb_model_train(r->m, 1);
    for (int i = 0; i < n; i++) {
        nb_ctx_reset(r->ctx);
        nb_batch b;
        if (nb_loader_next(r->l, r->ctx, &b)) return -1;
        if (!b.n) {
            nb_loader_start_epoch(r->l);
            if (nb_loader_next(r->l, r->ctx, &b)) return -1;
        }
        nb_tensor *loss = nb_cross_entropy(r->ctx, nb_model_forward(r->m, r->ctx, b.x), b.y, NULL, -100,
                                           NB_REDUCTION_MEAN);
        if (!loss) return -1;
        nb_model_zero_grad(r->m);
        if (nb_backward(r->ctx, loss) || nb_clip_grad_norm(r->m, 5.0, 2.0, 1, NULL) || nb_optim_step(r->o)) return -1;
        if (r->o->steps % 3 == 0 && nb_schedule_step(r->s)) return -1;
    }
    nb_ctx_reset(r->ctx);
    return 0;
}

static int same_state(const run *a, const run *b)
{
    if (a->m->numel != b->m->numel || memcmp(a->m->data, b->m->data, a->m->numel * sizeof(float))) return 0;
    if (a->o->steps != b->o->steps || nb_optim_state_count(a->o) != nb_optim_state_count(b->o)) return 0;
    for (int i = 0; i < nb_optim_state_count(a->o); i++) {
        float *x, *y;
        size_t n;
        nb_optim_state_get(a->o, i, NULL, &x, &n);
        nb_optim_state_get(b->o, i, NULL, &y, NULL);
        if (memcmp(x, y, n * sizeof(float))) return 0;
    }
    for (int g = 0; g < nb_optim_group_count(a->o); g++)
        if (nb_optim_get_lr(a->o, g) != nb_optim_get_lr(b->o, g)) return 0;
    return a->s->last_epoch == b->s->last_epoch;
}

static void resume_case(const char *what, nb_optim_opts opts)
{
    enum { N = 9, M = 11 }; /* the save falls mid-epoch, mid-warm-up */
    const char *path = tmp_file("resume.safetensors");
    run full, first, second;
    CHECK_MSG(run_new(&full, &opts, 1) == 0 && train(&full, N + M) == 0, "%s: %s", what, nb_last_error());
    CHECK_MSG(run_new(&first, &opts, 1) == 0 && train(&first, N) == 0, "%s: %s", what, nb_last_error());
    const char *meta[] = {"epoch", "2"};
    nb_checkpoint c1 = ck(&first);
    CHECK_MSG(nb_checkpoint_save(path, &c1, meta, 1) == NB_OK, "%s: %s", what, nb_last_error());
    /* fresh objects, initialised from another seed: everything must come from the file */
    CHECK(run_new(&second, &opts, 12345) == 0);
    nb_checkpoint c2 = ck(&second);
    CHECK_MSG(nb_checkpoint_load(path, &c2) == NB_OK, "%s: %s", what, nb_last_error());
    CHECK_MSG(same_state(&first, &second), "%s: state after load differs", what);
    CHECK(train(&second, M) == 0);
    CHECK_MSG(same_state(&full, &second), "%s: resumed run differs from the uninterrupted one", what);
    CHECK(train(&first, M) == 0); /* the saver itself went on unchanged */
    CHECK(same_state(&full, &first));

    nb_safetensors *f = NULL;
    CHECK(nb_checkpoint_open_meta(path, &f) == NB_OK);
    CHECK(f && nb_safetensors_meta(f, "epoch") && !strcmp(nb_safetensors_meta(f, "epoch"), "2"));
    nb_safetensors_free(f);
    run_free(&full);
    run_free(&first);
    run_free(&second);
}

TEST(checkpoint_resume_is_exact_for_every_optimizer)
{
    make_data();
    nb_optim_opts o = nb_optim_defaults(NB_OPTIM_SGD);
    o.lr = 0.05, o.momentum = 0.9, o.nesterov = 1, o.weight_decay = 1e-3;
    resume_case("sgd nesterov", o);
    o = nb_optim_defaults(NB_OPTIM_RMSPROP);
    o.momentum = 0.5, o.centered = 1;
    resume_case("rmsprop centered", o);
    o = nb_optim_defaults(NB_OPTIM_ADAGRAD);
    o.lr_decay = 0.01, o.initial_accumulator_value = 0.1;
    resume_case("adagrad", o);
    o = nb_optim_defaults(NB_OPTIM_ADAM);
    o.amsgrad = 1;
    resume_case("adam amsgrad", o);
    resume_case("adamw", nb_optim_defaults(NB_OPTIM_ADAMW));
}

/* A checkpoint is also a weights file. */
TEST(checkpoint_loads_as_weights)
{
    make_data();
    run r;
    nb_optim_opts o = nb_optim_defaults(NB_OPTIM_ADAM);
    CHECK(run_new(&r, &o, 1) == 0 && train(&r, 3) == 0);
    const char *path = tmp_file("weights-ckpt.safetensors");
    nb_checkpoint c = ck(&r);
    CHECK(nb_checkpoint_save(path, &c, NULL, 0) == NB_OK);
    nb_model *m = NULL;
    CHECK_MSG(nb_model_load_file(path, &m) == NB_OK, "%s", nb_last_error());
    CHECK(m && m->numel == r.m->numel && !memcmp(m->data, r.m->data, m->numel * sizeof(float)));
    nb_model_free(m);
    run_free(&r);
}

/* Mismatched objects, damaged files and plain weight files are refused
 * with the objects untouched. */
TEST(checkpoint_refusals_leave_objects_untouched)
{
    make_data();
    nb_optim_opts adam = nb_optim_defaults(NB_OPTIM_ADAM), sgd = nb_optim_defaults(NB_OPTIM_SGD);
    run a, b;
    CHECK(run_new(&a, &adam, 1) == 0 && train(&a, 4) == 0);
    const char *path = tmp_file("refuse.safetensors"), *bad = tmp_file("refuse-bad.safetensors");
    nb_checkpoint ca = ck(&a);
    CHECK(nb_checkpoint_save(path, &ca, NULL, 0) == NB_OK);
    const char *reserved[] = {"nabla.optim", "x"};
    CHECK(nb_checkpoint_save(path, &ca, reserved, 1) == NB_ERR_ARG);

    CHECK(run_new(&b, &sgd, 3) == 0 && train(&b, 2) == 0);
    float *before = malloc(b.m->numel * sizeof(float));
    memcpy(before, b.m->data, b.m->numel * sizeof(float));
    int64_t steps = b.o->steps;
    nb_checkpoint cb = ck(&b);
    CHECK(nb_checkpoint_load(path, &cb) == NB_ERR_STATE); /* Adam into SGD */
    CHECK(strstr(nb_last_error(), "Adam") && strstr(nb_last_error(), "SGD"));
    CHECK(!memcmp(before, b.m->data, b.m->numel * sizeof(float)) && b.o->steps == steps);

    /* another schedule */
    nb_schedule_opts so = nb_schedule_defaults(NB_SCHEDULE_CONSTANT);
    nb_schedule *other = nb_schedule_new(a.o, &so);
    nb_checkpoint cs = ca;
    cs.schedule = other;
    CHECK(nb_checkpoint_load(path, &cs) == NB_ERR_STATE);
    CHECK(strstr(nb_last_error(), "schedule"));
    nb_schedule_free(other);

    /* a truncated file */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    f = fopen(bad, "wb");
    fwrite(buf, 1, (size_t)n - 100, f);
    fclose(f);
    nb_checkpoint c2 = ck(&a);
    memcpy(before, a.m->data, 4 * sizeof(float));
    CHECK(nb_checkpoint_load(bad, &c2) == NB_ERR_FORMAT);
    CHECK(!memcmp(before, a.m->data, 4 * sizeof(float)));
    /* a damaged state string: a group's lr no longer a number */
    char *p = memmem(buf, (size_t)n, "lr=0x", 5);
    CHECK(p != NULL);
    if (p) p[3] = 'z';
    f = fopen(bad, "wb");
    fwrite(buf, 1, (size_t)n, f);
    fclose(f);
    CHECK(nb_checkpoint_load(bad, &c2) == NB_ERR_FORMAT);
    CHECK(strstr(nb_last_error(), "damaged"));
    free(buf);
    /* a plain weights file is not a checkpoint */
    CHECK(nb_model_save(a.m, bad) == NB_OK);
    CHECK(nb_checkpoint_load(bad, &c2) == NB_ERR_FORMAT);
    CHECK(strstr(nb_last_error(), "not a nabla checkpoint"));
    CHECK(nb_checkpoint_load(tmp_file("no-such-checkpoint"), &c2) == NB_ERR_NOTFOUND);
    free(before);
    run_free(&a);
    run_free(&b);
}

/* A model big enough that a save takes a while: 1,000,000 weights. */
static nb_model *big_model(float value)
{
    nb_model *m = nb_model_new("big", "-");
    int64_t shape[1] = {1000000};
    nb_model_add_param(m, "w", 1, shape);
    for (size_t i = 0; i < m->numel; i++) m->data[i] = value;
    return m;
}

static int holds_value(const char *path, float *value)
{
    nb_safetensors *f = NULL;
    if (nb_safetensors_load(path, &f)) return 0;
    const nb_st_tensor *t = nb_safetensors_find(f, "w");
    int ok = t && t->numel == 1000000;
    for (int64_t i = 0; ok && i < t->numel; i++) ok = t->data[i] == t->data[0];
    if (ok) *value = t->data[0];
    nb_safetensors_free(f);
    return ok;
}

/* Kill a process that keeps rewriting the checkpoint at random moments:
 * the file at the path always loads and is one of the versions written. */
TEST(checkpoint_survives_a_killed_writer)
{
    /* in a folder of its own: a killed writer leaves its temporary file */
    const char *dir = tmp_file("killed");
    mkdir(dir, 0700);
    char path[600];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    nb_model *m = big_model(0);
    nb_optim_opts o = nb_optim_defaults(NB_OPTIM_ADAM);
    nb_optimizer *opt = nb_optim_new(m, &o);
    nb_checkpoint c = {m, opt, NULL, NULL, NULL};
    CHECK(nb_checkpoint_save(path, &c, NULL, 0) == NB_OK);
    unsigned seed = 1;
    float last = 0;
    for (int round = 0; round < 12; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int k = 1;; k++) {
                for (size_t i = 0; i < m->numel; i++) m->data[i] = (float)(round * 1000 + k);
                nb_checkpoint_save(path, &c, NULL, 0);
            }
        }
        seed = seed * 1103515245u + 12345u;
        struct timespec ts = {0, (long)(1000000 + (seed >> 8) % 40000000)}; /* 1 to 41 ms */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        float v = -1;
        CHECK_MSG(holds_value(path, &v), "round %d: %s", round, nb_last_error());
        /* the file before this round, or one this round wrote whole */
        CHECK_MSG(v == last || (v > round * 1000 && v < (round + 1) * 1000), "round %d: %g (before: %g)", round,
                  (double)v, (double)last);
        last = v;
    }
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') {
            char f[900];
            snprintf(f, sizeof f, "%s/%s", dir, e->d_name);
            unlink(f);
        }
    if (d) closedir(d);
    rmdir(dir);
    nb_optim_free(opt);
    nb_model_free(m);
}

/* A full disk (a file size limit in a child process) fails the save with
 * an error and leaves the old checkpoint as it was. */
TEST(checkpoint_full_disk_keeps_the_old_file)
{
    const char *path = tmp_file("full.safetensors");
    nb_model *m = big_model(7);
    nb_optim_opts o = nb_optim_defaults(NB_OPTIM_SGD);
    nb_optimizer *opt = nb_optim_new(m, &o);
    nb_checkpoint c = {m, opt, NULL, NULL, NULL};
    CHECK(nb_checkpoint_save(path, &c, NULL, 0) == NB_OK);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {1 << 20, 1 << 20}; /* 1 MiB: the 4 MB file does not fit */
        setrlimit(RLIMIT_FSIZE, &rl);
        for (size_t i = 0; i < m->numel; i++) m->data[i] = 8;
        nb_status s = nb_checkpoint_save(path, &c, NULL, 0);
        _exit(s == NB_ERR_IO && strstr(nb_last_error(), path) ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the save did not fail with NB_ERR_IO naming the file");
    float v = -1;
    CHECK(holds_value(path, &v) && v == 7);
    nb_optim_free(opt);
    nb_model_free(m);
}
