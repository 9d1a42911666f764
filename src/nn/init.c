/* torch.nn.init: uniform, normal, constant, Xavier and Kaiming. */
#include "../core/internal.h"
#include <math.h>

static int64_t numel(const nb_tensor *t) { return nb_tensor_numel(t); }

void nb_init_uniform(nb_tensor *t, nb_rng *r, float a, float b)
{
    int64_t n = numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = a + (b - a) * nb_rng_uniform(r);
}

void nb_init_normal(nb_tensor *t, nb_rng *r, float mean, float std)
{
    int64_t n = numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = mean + std * nb_rng_normal(r);
}

void nb_init_constant(nb_tensor *t, float v)
{
    int64_t n = numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = v;
}

/* torch's _calculate_fan_in_and_fan_out: dims >= 2; a 1-D tensor uses its
 * length for both (torch raises; biases are initialised by their layer). */
static void fans(const nb_tensor *t, double *fan_in, double *fan_out)
{
    if (t->ndim < 2) {
        *fan_in = *fan_out = t->ndim ? (double)t->shape[0] : 1.0;
        return;
    }
    double rf = 1;
    for (int i = 2; i < t->ndim; i++) rf *= (double)t->shape[i];
    *fan_in = (double)t->shape[1] * rf;
    *fan_out = (double)t->shape[0] * rf;
}

float nb_init_gain(const char *nl, float param)
{
    if (!nl) return 1.0f;
    if (!strcmp(nl, "tanh")) return 5.0f / 3.0f;
    if (!strcmp(nl, "relu")) return (float)sqrt(2.0);
    if (!strcmp(nl, "leaky_relu")) return (float)sqrt(2.0 / (1.0 + (double)param * param));
    if (!strcmp(nl, "selu")) return 0.75f;
    return 1.0f; /* linear, conv*, sigmoid, unknown */
}

void nb_init_xavier_uniform(nb_tensor *t, nb_rng *r, float gain)
{
    double fi, fo;
    fans(t, &fi, &fo);
    float a = (float)(gain * sqrt(6.0 / (fi + fo)));
    nb_init_uniform(t, r, -a, a);
}

void nb_init_xavier_normal(nb_tensor *t, nb_rng *r, float gain)
{
    double fi, fo;
    fans(t, &fi, &fo);
    nb_init_normal(t, r, 0.0f, (float)(gain * sqrt(2.0 / (fi + fo))));
}

static double kaiming_std(const nb_tensor *t, float a, nb_fan_mode mode)
{
    double fi, fo;
    fans(t, &fi, &fo);
    double gain = sqrt(2.0 / (1.0 + (double)a * a));
    return gain / sqrt(mode == NB_FAN_IN ? fi : fo);
}

void nb_init_kaiming_uniform(nb_tensor *t, nb_rng *r, float a, nb_fan_mode mode)
{
    float bound = (float)(sqrt(3.0) * kaiming_std(t, a, mode));
    nb_init_uniform(t, r, -bound, bound);
}

void nb_init_kaiming_normal(nb_tensor *t, nb_rng *r, float a, nb_fan_mode mode)
{
    nb_init_normal(t, r, 0.0f, (float)kaiming_std(t, a, mode));
}
