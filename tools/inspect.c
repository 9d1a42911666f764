/* nabla inspect — what a safetensors file holds: metadata, and per tensor
 * its name, dtype, shape and value statistics. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const cli_cmd cli_inspect_cmd = {
    "inspect",
    "list a safetensors file's metadata and tensors with min/max/mean",
    "FILE.safetensors",
    "Reads and validates the whole file (any safetensors file: nabla's, or\n"
    "PyTorch's converted with the safetensors format), then prints its metadata\n"
    "and one line per tensor in file order: name, dtype as stored, shape, and\n"
    "the min, max and mean of its finite values with the count of NaN and\n"
    "infinite ones (values converted to float32 first).\n\n"
    "example:\n"
    "  nabla inspect mlp.safetensors\n",
};

/* s with control characters and backslashes escaped, so a hostile name
 * cannot drive the terminal; valid UTF-8 (checked by the reader) passes. */
static void put_escaped(const char *s, int width)
{
    int n = 0;
    for (; *s; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) n += printf("\\x%02x", c) - 1;
        else if (c == '\\') n += printf("\\\\") - 1;
        else putchar(c);
    }
    for (; n < width; n++) putchar(' ');
}

typedef struct stats {
    double min, max, mean;
    int64_t finite, nonfinite;
} stats;

static stats tensor_stats(const nb_st_tensor *t)
{
    stats s = {INFINITY, -INFINITY, 0, 0, 0};
    double sum = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        float v = t->data[i];
        if (!isfinite(v)) {
            s.nonfinite++;
            continue;
        }
        if (v < s.min) s.min = v;
        if (v > s.max) s.max = v;
        sum += v;
        s.finite++;
    }
    if (s.finite) s.mean = sum / (double)s.finite;
    return s;
}

static void shape_text(const nb_st_tensor *t, char *buf, size_t size)
{
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < t->ndim && o < size; d++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

/* The column width that fits s as well as w, at most cap. */
static int widest(int w, const char *s, int cap)
{
    size_t n = strlen(s);
    if (n > (size_t)cap) n = (size_t)cap;
    return (int)n > w ? (int)n : w;
}

static void print_file(const char *path, const nb_safetensors *f)
{
    int64_t total = 0;
    for (int i = 0; i < f->n; i++) total += f->tensors[i].numel;
    printf("%s: %d tensor%s, %lld values\n", path, f->n, f->n == 1 ? "" : "s", (long long)total);
    if (f->nmeta) {
        int kw = 0;
        for (int i = 0; i < f->nmeta; i++) kw = widest(kw, f->meta_keys[i], 24);
        printf("\nmetadata:\n");
        for (int i = 0; i < f->nmeta; i++) {
            printf("  ");
            put_escaped(f->meta_keys[i], kw);
            printf("  ");
            put_escaped(f->meta_values[i], 0);
            putchar('\n');
        }
    }
    if (!f->n) return;
    int nw = 4;
    for (int i = 0; i < f->n; i++) nw = widest(nw, f->tensors[i].name, 40);
    printf("\n%-*s  %-5s %-18s %12s %12s %12s %10s\n", nw, "name", "dtype", "shape", "min", "max", "mean",
           "non-finite");
    for (int i = 0; i < f->n; i++) {
        const nb_st_tensor *t = &f->tensors[i];
        char shape[160];
        shape_text(t, shape, sizeof shape);
        stats s = tensor_stats(t);
        put_escaped(t->name, nw);
        printf("  %-5s %-18s ", t->dtype, shape);
        if (s.finite) printf("%12.6g %12.6g %12.6g", s.min, s.max, s.mean);
        else printf("%12s %12s %12s", "-", "-", "-");
        printf(" %10lld\n", (long long)s.nonfinite);
    }
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    /* The file comes first; cli_parse then sees it as argv[0]. */
    if (argc > 1 && argv[1][0] != '-') {
        path = argv[1];
        argc--, argv++;
    }
    int r = cli_parse(&cli_inspect_cmd, NULL, 0, argc, argv);
    if (r >= 0) return r;
    if (!path) return cli_usage_error("inspect", "give the FILE to inspect");
    nb_safetensors *f = NULL;
    if (nb_safetensors_load(path, &f) != NB_OK) return cli_lib_error();
    print_file(path, f);
    nb_safetensors_free(f);
    return CLI_OK;
}
