/* nabla lab — run the lab's experiments (lab/): each claim of the study
 * notes measured, written up in DIR/REPORT.md with plots and CSV files. */
#include "../lab/lab.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

const cli_cmd cli_lab_cmd = {
    "lab",
    "measure the notes' claims: experiments, plots and verdicts in REPORT.md",
    "[--quick] [--out DIR] [--threads N] [--seed S] [--list] [CLAIM ...]",
    "CLAIM: a claim's number or name (see --list); none = every claim, in order.\n"
    "Each claim quotes the notes, runs its experiment on real data (Fashion-MNIST\n"
    "and synthetic tasks), and writes a section of DIR/REPORT.md: the settings, the\n"
    "measured numbers (also DIR/claimNN_*.csv), plots (DIR/claimNN_*.png) and a\n"
    "verdict (confirmed, refuted, or depends, with the condition) computed from\n"
    "the numbers by the rule the section states. DIR/verdicts.csv lists them.\n"
    "\n"
    "--quick: every experiment in a reduced form, about a minute in all (one core,\n"
    "  idle machine); the full run trains longer on more data (see each section).\n"
    "The same --seed and --threads give the same numbers (timings aside).\n"
    "Exit status 1 when an experiment failed (its section says why).\n",
};

/* Split argv into options (kept in argv, compacted) and claim names. */
static int split_args(int argc, char **argv, const char **names, int *nnames)
{
    static const char *const with_value[] = {"--out", "--threads", "--seed", "--data"};
    int k = 1;
    *nnames = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            if (*nnames == 64) return -1;
            names[(*nnames)++] = a;
            continue;
        }
        argv[k++] = argv[i];
        for (size_t w = 0; w < sizeof with_value / sizeof *with_value; w++)
            if (!strcmp(a, with_value[w]) && i + 1 < argc) argv[k++] = argv[++i];
    }
    return k;
}

static void list_claims(void)
{
    for (int i = 0; i < lab_nclaims; i++) {
        const lab_claim *c = lab_claims[i];
        printf("%2d  %-16s %s (%s)%s\n", c->number, c->id, c->title, c->where,
               lab_is_available(c) ? "" : "  [not yet available]");
    }
}

int cmd_lab(int argc, char **argv)
{
    lab L = {.out = "lab-out", .threads = 1, .data_dir = nb_fashion_mnist_default_dir()};
    int list = 0, quiet = 0;
    cli_opt opts[] = {
        {"quick", CLI_FLAG, &L.quick, 0, 0, NULL, "every experiment reduced: under two minutes in all", 0},
        {"out", CLI_STR, &L.out, 0, 0, "DIR", "directory of REPORT.md, the plots and the CSV files", 0},
        {"threads", CLI_INT, &L.threads, 1, 4096, "N", "kernel threads", 0},
        {"seed", CLI_U64, &L.seed, 0, 0, "S", "seed of every random draw", 0},
        {"data", CLI_STR, &L.data_dir, 0, 0, "DIR", "Fashion-MNIST directory", 0},
        {"list", CLI_FLAG, &list, 0, 0, NULL, "list the claims and exit", 0},
        {"quiet", CLI_FLAG, &quiet, 0, 0, NULL, "print nothing but errors", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]);
    char cmdline[1024] = "nabla lab";
    for (int i = 1; i < argc; i++) {
        size_t len = strlen(cmdline);
        snprintf(cmdline + len, sizeof cmdline - len, " %s", argv[i]);
    }
    const char *names[64];
    int nnames;
    int nargs = split_args(argc, argv, names, &nnames);
    if (nargs < 0) return cli_usage_error("lab", "too many claims");
    int r = cli_parse(&cli_lab_cmd, opts, nopts, nargs, argv);
    if (r >= 0) return r;
    if (list) {
        list_claims();
        return CLI_OK;
    }
    const lab_claim *chosen[64];
    int n = 0;
    for (int i = 0; i < nnames; i++) {
        const lab_claim *c = lab_find(names[i]);
        if (!c) return cli_usage_error("lab", "unknown claim '%s' (nabla lab --list names them)", names[i]);
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= chosen[k] == c;
        if (!dup) chosen[n++] = c;
    }
    if (!n)
        for (int i = 0; i < lab_nclaims; i++) chosen[n++] = lab_claims[i];
    if (mkdir(L.out, 0777) != 0 && errno != EEXIST) return cli_fail("--out %s: %s", L.out, strerror(errno));
    struct stat st;
    if (stat(L.out, &st) != 0 || !S_ISDIR(st.st_mode)) return cli_fail("--out %s: not a directory", L.out);
    int rc = lab_run(&L, chosen, n, cmdline, quiet);
    nb_dataset_free(L.train);
    nb_dataset_free(L.test);
    return rc;
}
