/* Charts: the series a caller adds (copies of its arrays), axis ranges and
 * ticks, the layout, and a small anti-aliased rasterizer for lines,
 * markers, bands and bitmap text, written as an RGB PNG. All of it is plain
 * double arithmetic in a fixed order, so the same chart gives the same bytes. */
#include "../core/internal.h"
#include "plot_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MIN_SIDE 200
#define MAX_SIDE 4096
/* Linear axis ends stay within +-1e300 so that every span is finite. */
#define MAX_ABS 1e300
#define MAX_MINOR 1024

const unsigned char nb__plot_palette[NB__PLOT_NCOLORS][3] = {
    {0, 114, 178},   /* blue */
    {213, 94, 0},    /* vermillion */
    {0, 158, 115},   /* bluish green */
    {204, 121, 167}, /* reddish purple */
    {230, 159, 0},   /* orange */
    {86, 180, 233},  /* sky blue */
    {0, 0, 0},       /* black */
    {190, 170, 0},   /* yellow */
};
const unsigned char nb__plot_grey[3] = {110, 110, 110};

static const unsigned char WHITE[3] = {255, 255, 255};
static const unsigned char TEXT[3] = {25, 25, 25};
static const unsigned char FRAME[3] = {70, 70, 70};
static const unsigned char GRID[3] = {226, 226, 226};
static const unsigned char MINOR_GRID[3] = {242, 242, 242};
static const unsigned char LEGEND_EDGE[3] = {175, 175, 175};
#define BAND_ALPHA 56    /* of 255 */
#define LEGEND_ALPHA 225 /* a legend lets what it covers show a little */

/* ---- the chart ------------------------------------------------------------------ */

enum { SERIES_LINE, SERIES_POINTS, SERIES_BAND, SERIES_HLINE };

typedef struct series {
    int kind;
    int color;          /* palette index (not used by an hline) */
    char *label;        /* NULL: not in the legend */
    int n;
    double *x, *y, *y2; /* one allocation; y2 is a band's upper edge */
    double level;       /* an hline's y */
} series;

struct nb_plot {
    int w, h;
    char *title, *xlabel, *ylabel;
    nb_plot_axis_scale xscale, yscale;
    double xlim[2], ylim[2]; /* NAN: from the data */
    series *s;
    int ns, cap;
    int nlines;              /* lines so far: the next line's colour */
};

nb_plot *nb_plot_new(int width, int height)
{
    if (width < MIN_SIDE || width > MAX_SIDE || height < MIN_SIDE || height > MAX_SIDE) {
        nb__fail(NB_ERR_ARG, "plot new: size %dx%d outside %d..%d", width, height, MIN_SIDE, MAX_SIDE);
        return NULL;
    }
    nb_plot *p = NB_MALLOC(sizeof *p);
    if (!p) {
        nb__fail(NB_ERR_NOMEM, "plot new: out of memory");
        return NULL;
    }
    memset(p, 0, sizeof *p);
    p->w = width;
    p->h = height;
    p->xlim[0] = p->xlim[1] = p->ylim[0] = p->ylim[1] = NAN;
    return p;
}

static void series_free(series *s)
{
    NB_FREE(s->label);
    NB_FREE(s->x);
}

void nb_plot_free(nb_plot *p)
{
    if (!p) return;
    for (int i = 0; i < p->ns; i++) series_free(&p->s[i]);
    NB_FREE(p->s);
    NB_FREE(p->title);
    NB_FREE(p->xlabel);
    NB_FREE(p->ylabel);
    NB_FREE(p);
}

/* *out = a copy of text, or NULL for NULL or "". */
static nb_status copy_text(const char *what, const char *text, char **out)
{
    *out = NULL;
    if (!text || !*text) return NB_OK;
    size_t n = strlen(text) + 1;
    *out = NB_MALLOC(n);
    if (!*out) return nb__fail(NB_ERR_NOMEM, "plot %s: out of memory", what);
    memcpy(*out, text, n);
    return NB_OK;
}

nb_status nb_plot_title(nb_plot *p, const char *title)
{
    if (!p) return nb__fail(NB_ERR_ARG, "plot title: NULL plot");
    char *t;
    nb_status s = copy_text("title", title, &t);
    if (s) return s;
    NB_FREE(p->title);
    p->title = t;
    return NB_OK;
}

nb_status nb_plot_labels(nb_plot *p, const char *xlabel, const char *ylabel)
{
    if (!p) return nb__fail(NB_ERR_ARG, "plot labels: NULL plot");
    char *x, *y;
    nb_status s = copy_text("labels", xlabel, &x);
    if (s) return s;
    if ((s = copy_text("labels", ylabel, &y))) {
        NB_FREE(x);
        return s;
    }
    NB_FREE(p->xlabel);
    NB_FREE(p->ylabel);
    p->xlabel = x;
    p->ylabel = y;
    return NB_OK;
}

/* Limits lo, hi (NAN: from the data) for an axis of scale sc. */
static nb_status check_limits(const char *what, char axis, nb_plot_axis_scale sc, double lo, double hi)
{
    if (isinf(lo) || isinf(hi))
        return nb__fail(NB_ERR_ARG, "plot %s: %c limits %g, %g: each must be finite or NAN", what, axis, lo, hi);
    if (!isnan(lo) && !isnan(hi) && !(lo < hi))
        return nb__fail(NB_ERR_ARG, "plot %s: %c limits %g, %g: lo must be below hi", what, axis, lo, hi);
    if (sc == NB_PLOT_LOG && (lo <= 0 || hi <= 0))
        return nb__fail(NB_ERR_ARG, "plot %s: %c limit %g is not positive on a log axis", what, axis,
                        lo <= 0 ? lo : hi);
    return NB_OK;
}

nb_status nb_plot_scale(nb_plot *p, nb_plot_axis_scale x, nb_plot_axis_scale y)
{
    if (!p) return nb__fail(NB_ERR_ARG, "plot scale: NULL plot");
    if ((x != NB_PLOT_LINEAR && x != NB_PLOT_LOG) || (y != NB_PLOT_LINEAR && y != NB_PLOT_LOG))
        return nb__fail(NB_ERR_ARG, "plot scale: %d, %d: each must be NB_PLOT_LINEAR or NB_PLOT_LOG", (int)x, (int)y);
    nb_status s = check_limits("scale", 'x', x, p->xlim[0], p->xlim[1]);
    if (!s) s = check_limits("scale", 'y', y, p->ylim[0], p->ylim[1]);
    if (s) return s;
    p->xscale = x;
    p->yscale = y;
    return NB_OK;
}

nb_status nb_plot_xlim(nb_plot *p, double lo, double hi)
{
    if (!p) return nb__fail(NB_ERR_ARG, "plot xlim: NULL plot");
    nb_status s = check_limits("xlim", 'x', p->xscale, lo, hi);
    if (s) return s;
    p->xlim[0] = lo;
    p->xlim[1] = hi;
    return NB_OK;
}

nb_status nb_plot_ylim(nb_plot *p, double lo, double hi)
{
    if (!p) return nb__fail(NB_ERR_ARG, "plot ylim: NULL plot");
    nb_status s = check_limits("ylim", 'y', p->yscale, lo, hi);
    if (s) return s;
    p->ylim[0] = lo;
    p->ylim[1] = hi;
    return NB_OK;
}

/* Append s (its allocations pass to the chart), or free them on failure. */
static nb_status push_series(nb_plot *p, const char *what, series *s)
{
    if (p->ns == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        series *grown = NB_REALLOC(p->s, (size_t)cap * sizeof *grown);
        if (!grown) {
            series_free(s);
            return nb__fail(NB_ERR_NOMEM, "plot %s: out of memory", what);
        }
        p->s = grown;
        p->cap = cap;
    }
    p->s[p->ns++] = *s;
    return NB_OK;
}

static nb_status add_series(nb_plot *p, const char *what, int kind, const char *label, const double *x,
                            const double *y, const double *y2, int n)
{
    if (!p) return nb__fail(NB_ERR_ARG, "plot %s: NULL plot", what);
    if (n < 0) return nb__fail(NB_ERR_ARG, "plot %s: n = %d is negative", what, n);
    if (n > 0 && (!x || !y || (kind == SERIES_BAND && !y2)))
        return nb__fail(NB_ERR_ARG, "plot %s: NULL array with n = %d", what, n);
    series s = {.kind = kind, .color = p->nlines % NB__PLOT_NCOLORS, .n = n};
    nb_status st = copy_text(what, label, &s.label);
    if (st) return st;
    int arrays = kind == SERIES_BAND ? 3 : 2;
    if (n > 0) {
        s.x = NB_MALLOC((size_t)n * (size_t)arrays * sizeof(double));
        if (!s.x) {
            series_free(&s);
            return nb__fail(NB_ERR_NOMEM, "plot %s: out of memory for %d points", what, n);
        }
        s.y = s.x + n;
        memcpy(s.x, x, (size_t)n * sizeof(double));
        memcpy(s.y, y, (size_t)n * sizeof(double));
        if (kind == SERIES_BAND) {
            s.y2 = s.y + n;
            memcpy(s.y2, y2, (size_t)n * sizeof(double));
        }
    }
    if ((st = push_series(p, what, &s))) return st;
    if (kind == SERIES_LINE || kind == SERIES_POINTS) p->nlines++;
    return NB_OK;
}

nb_status nb_plot_line(nb_plot *p, const char *label, const double *x, const double *y, int n)
{
    return add_series(p, "line", SERIES_LINE, label, x, y, NULL, n);
}

nb_status nb_plot_line_points(nb_plot *p, const char *label, const double *x, const double *y, int n)
{
    return add_series(p, "line_points", SERIES_POINTS, label, x, y, NULL, n);
}

nb_status nb_plot_band(nb_plot *p, const double *x, const double *ylo, const double *yhi, int n)
{
    return add_series(p, "band", SERIES_BAND, NULL, x, ylo, yhi, n);
}

nb_status nb_plot_hline(nb_plot *p, const char *label, double y)
{
    if (!p) return nb__fail(NB_ERR_ARG, "plot hline: NULL plot");
    if (!isfinite(y)) return nb__fail(NB_ERR_ARG, "plot hline: y = %g is not finite", y);
    series s = {.kind = SERIES_HLINE, .level = y};
    nb_status st = copy_text("hline", label, &s.label);
    if (st) return st;
    return push_series(p, "hline", &s);
}

/* ---- tick values and labels ---------------------------------------------------- */

/* A step of 1, 2 or 5 x 10^k, at least raw. */
static double nice_step(double raw)
{
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f <= 1 + 1e-9 ? 1 : f <= 2 + 1e-9 ? 2 : f <= 5 + 1e-9 ? 5 : 10) * mag;
}

int nb__plot_linear_ticks(double lo, double hi, int target, double *ticks, int cap, double *step)
{
    int n = 0;
    /* A target of 5 intervals or more always leaves two multiples of the
     * step inside [lo, hi], so the loop ends. */
    for (int t = target < 1 ? 1 : target; n < 2 && t <= (target > 5 ? target : 5); t++) {
        *step = nice_step(hi / t - lo / t); /* (hi - lo) / t without overflow */
        n = 0;
        for (double k = ceil(lo / *step - 1e-9); k <= floor(hi / *step + 1e-9) && n < cap; k++)
            ticks[n++] = k == 0 ? 0.0 : k * *step; /* no -0 */
    }
    return n;
}

/* v with digits down to 10^last: fixed notation, or e-notation with the
 * mantissa's trailing zeros dropped ("1e-05", "2.5e+07", "0"). */
static void format_value(double v, int last, int expo, char *buf, size_t size)
{
    if (!expo) {
        int decimals = last < 0 ? -last : 0;
        snprintf(buf, size, "%.*f", decimals > 17 ? 17 : decimals, v);
        return;
    }
    if (v == 0) {
        snprintf(buf, size, "0");
        return;
    }
    int digits = (int)floor(log10(fabs(v))) - last;
    snprintf(buf, size, "%.*e", digits < 0 ? 0 : digits > 16 ? 16 : digits, v);
    char *e = strchr(buf, 'e'), *dot = strchr(buf, '.');
    if (!e || !dot) return;
    char *end = e;
    while (end > dot + 1 && end[-1] == '0') end--;
    if (end == dot + 1) end = dot;
    memmove(end, e, strlen(e) + 1);
}

/* printf's %g switches to e-notation outside [1e-4, 1e6): readers know it. */
static int wants_expo(double maxabs) { return maxabs != 0 && (maxabs < 1e-4 || maxabs >= 1e6); }

void nb__plot_linear_labels(const double *ticks, int n, double step, char (*labels)[NB__PLOT_LABEL])
{
    double maxabs = 0;
    for (int i = 0; i < n; i++) maxabs = fmax(maxabs, fabs(ticks[i]));
    int last = (int)floor(log10(step) + 1e-9), expo = wants_expo(maxabs);
    for (int i = 0; i < n; i++) format_value(ticks[i], last, expo, labels[i], NB__PLOT_LABEL);
}

void nb__plot_decade_label(int k, char *buf, size_t size)
{
    double v = pow(10, k);
    format_value(v, k, wants_expo(v), buf, size);
}

/* ---- axes ---------------------------------------------------------------------- */

typedef struct axis {
    int log;
    double lo, hi; /* in axis units: the value, or its log10 */
    int n, nminor;
    double major[NB__PLOT_MAX_TICKS], minor[MAX_MINOR];
    char label[NB__PLOT_MAX_TICKS][NB__PLOT_LABEL];
} axis;

/* v in axis units, NAN where it cannot be drawn. */
static double to_axis(int log, double v)
{
    if (!isfinite(v)) return NAN;
    if (!log) return v;
    return v > 0 ? log10(v) : NAN;
}

static void widen(double *mn, double *mx, double v)
{
    if (v < *mn || isnan(*mn)) *mn = v;
    if (v > *mx || isnan(*mx)) *mx = v;
}

/* The range of the drawable data on the x (vertical = 0) or y axis, NAN
 * without any. A point counts when all its coordinates can be drawn. */
static void data_range(const nb_plot *p, int vertical, double *mn, double *mx)
{
    int xl = p->xscale == NB_PLOT_LOG, yl = p->yscale == NB_PLOT_LOG;
    *mn = *mx = NAN;
    for (int k = 0; k < p->ns; k++) {
        const series *s = &p->s[k];
        if (s->kind == SERIES_HLINE) {
            double u = to_axis(yl, s->level);
            if (vertical && !isnan(u)) widen(mn, mx, u);
            continue;
        }
        for (int i = 0; i < s->n; i++) {
            double ux = to_axis(xl, s->x[i]), uy = to_axis(yl, s->y[i]);
            double uy2 = s->y2 ? to_axis(yl, s->y2[i]) : uy;
            if (isnan(ux) || isnan(uy) || isnan(uy2)) continue;
            if (!vertical) widen(mn, mx, ux);
            else {
                widen(mn, mx, uy);
                widen(mn, mx, uy2);
            }
        }
    }
}

static double clamp_abs(double v) { return v < -MAX_ABS ? -MAX_ABS : v > MAX_ABS ? MAX_ABS : v; }

/* The axis range from the fixed limits and the data range [mn, mx]: 5%
 * margins on the ends taken from the data, a sensible width around a single
 * value, [0, 1] (or 1..10) without data. */
static void axis_range(axis *a, const double lim[2], double mn, double mx)
{
    double flo = to_axis(a->log, lim[0]), fhi = to_axis(a->log, lim[1]), margin;
    if (!a->log) {
        flo = clamp_abs(flo);
        fhi = clamp_abs(fhi);
    }
    if (isnan(mn)) {
        mn = 0;
        mx = 1;
        margin = 0;
    } else if (mx > mn) {
        margin = 0.05 * mx - 0.05 * mn;
    } else {
        margin = a->log ? 0.5 : mn == 0 ? 1 : 0.1 * fabs(mn);
    }
    double lo = isnan(flo) ? mn - margin : flo, hi = isnan(fhi) ? mx + margin : fhi;
    if (!(hi > lo)) { /* one end fixed, all the data beyond it */
        double width = a->log ? 1 : fmax(fabs(isnan(flo) ? hi : lo), 1);
        if (isnan(fhi)) hi = lo + width;
        else lo = hi - width;
    }
    if (!a->log) {
        lo = clamp_abs(lo);
        hi = clamp_abs(hi);
    }
    /* Ticks and labels need a width that doubles can split. */
    double minw = fmax(1e-9 * fmax(fabs(lo), fabs(hi)), 1e-290);
    if (!(hi - lo >= minw)) {
        double mid = 0.5 * lo + 0.5 * hi;
        lo = mid - 0.5 * minw;
        hi = mid + 0.5 * minw;
    }
    a->lo = lo;
    a->hi = hi;
}

static void add_minor(axis *a, double u)
{
    if (a->nminor < MAX_MINOR) a->minor[a->nminor++] = u;
}

/* Log axis, `len` pixels long: labelled decades (every stride-th one, a
 * nice number, when there are many) with minor ticks where they have room:
 * at 2..9 x 10^k, or at the decades left unlabelled. Under two decades,
 * labelled ticks at m x 10^k; with fewer than three of those, linear ticks. */
static void log_ticks(axis *a, int target, int len)
{
    double d0 = ceil(a->lo - 1e-9), d1 = floor(a->hi + 1e-9), decade = len / (a->hi - a->lo);
    if (d1 > d0) {
        double stride = nice_step((d1 - d0) / target);
        if (stride < 1) stride = 1;
        for (double k = d0; k <= d1; k++) {
            if (fmod(k, stride) == 0 && a->n < NB__PLOT_MAX_TICKS) {
                nb__plot_decade_label((int)k, a->label[a->n], NB__PLOT_LABEL);
                a->major[a->n++] = k;
            } else if (decade >= 6) {
                add_minor(a, k);
            }
        }
        if (stride == 1 && decade >= 40)
            for (double k = floor(a->lo); k <= d1; k++)
                for (int m = 2; m <= 9; m++)
                    if (k + log10(m) >= a->lo && k + log10(m) <= a->hi) add_minor(a, k + log10(m));
        return;
    }
    static const int all[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, few[] = {1, 2, 5};
    for (int pass = 0; pass < 2; pass++) {
        const int *ms = pass ? few : all;
        int nm = pass ? 3 : 9;
        a->n = 0;
        for (double k = floor(a->lo); k <= ceil(a->hi); k++)
            for (int i = 0; i < nm; i++) {
                double u = k + log10(ms[i]);
                if (u >= a->lo - 1e-12 && u <= a->hi + 1e-12 && a->n < NB__PLOT_MAX_TICKS) {
                    double v = ms[i] * pow(10, k);
                    format_value(v, (int)k, wants_expo(v), a->label[a->n], NB__PLOT_LABEL);
                    a->major[a->n++] = u;
                }
            }
        if (a->n <= target + 1) break;
    }
    if (a->n >= 3) return;
    double v[NB__PLOT_MAX_TICKS], step;
    a->n = nb__plot_linear_ticks(pow(10, a->lo), pow(10, a->hi), target, v, NB__PLOT_MAX_TICKS, &step);
    nb__plot_linear_labels(v, a->n, step, a->label);
    for (int i = 0; i < a->n; i++) a->major[i] = log10(v[i]);
}

static void axis_ticks(axis *a, int target, int len)
{
    a->n = a->nminor = 0;
    if (a->log) {
        log_ticks(a, target, len);
        return;
    }
    double step;
    a->n = nb__plot_linear_ticks(a->lo, a->hi, target, a->major, NB__PLOT_MAX_TICKS, &step);
    nb__plot_linear_labels(a->major, a->n, step, a->label);
}

/* ---- mapping ------------------------------------------------------------------- */

/* Pixel coordinates of axis units, in long double: a point far outside the
 * axis range stays finite, so a line towards it keeps its direction. */
static long double px_of(const nb__plot_frame *fr, double u)
{
    return fr->x0 + ((long double)u - fr->xlo) / ((long double)fr->xhi - fr->xlo) * (fr->x1 - fr->x0);
}

static long double py_of(const nb__plot_frame *fr, double u)
{
    return fr->y1 - ((long double)u - fr->ylo) / ((long double)fr->yhi - fr->ylo) * (fr->y1 - fr->y0);
}

double nb__plot_map_x(const nb__plot_frame *fr, double x)
{
    double u = to_axis(fr->xlog, x);
    return isnan(u) ? NAN : (double)px_of(fr, u);
}

double nb__plot_map_y(const nb__plot_frame *fr, double y)
{
    double u = to_axis(fr->ylog, y);
    return isnan(u) ? NAN : (double)py_of(fr, u);
}

/* The pixel column or row of a tick, inside [lo, hi). */
static int tick_pixel(long double c, int lo, int hi)
{
    return c < lo ? lo : c >= hi ? hi - 1 : (int)floorl(c);
}

/* ---- canvas -------------------------------------------------------------------- */

typedef struct rect {
    int x0, y0, x1, y1; /* [x0, x1) x [y0, y1) */
} rect;

/* The image, and a coverage mask over the plot area: a shape is drawn into
 * the mask (each pixel keeps its largest coverage, so overlapping pieces of
 * one line do not darken), then composited once in its colour. */
typedef struct canvas {
    unsigned char *rgb;
    int w, h;
    rect area;           /* the plot area */
    unsigned char *mask; /* area-sized, 0..255 */
    unsigned char *ink;  /* area-sized: 1 where data was drawn (to place the legend) */
    rect dirty;          /* the part of mask that may be non-zero */
} canvas;

static void blend(canvas *cv, int x, int y, const unsigned char c[3], int alpha)
{
    unsigned char *px = cv->rgb + ((size_t)y * (size_t)cv->w + (size_t)x) * 3;
    for (int k = 0; k < 3; k++) px[k] = (unsigned char)((px[k] * (255 - alpha) + c[k] * alpha + 127) / 255);
}

static void fill(canvas *cv, rect r, rect clip, const unsigned char c[3], int alpha)
{
    int x0 = r.x0 > clip.x0 ? r.x0 : clip.x0, x1 = r.x1 < clip.x1 ? r.x1 : clip.x1;
    int y0 = r.y0 > clip.y0 ? r.y0 : clip.y0, y1 = r.y1 < clip.y1 ? r.y1 : clip.y1;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) blend(cv, x, y, c, alpha);
}

static rect whole(const canvas *cv) { return (rect){0, 0, cv->w, cv->h}; }

/* Mask pixel (i, j), in plot-area coordinates, covered by `cov` in [0, 1]. */
static void cover(canvas *cv, int i, int j, double cov)
{
    int pw = cv->area.x1 - cv->area.x0;
    unsigned char v = (unsigned char)(cov >= 1 ? 255 : cov * 255 + 0.5);
    unsigned char *m = cv->mask + (size_t)j * (size_t)pw + (size_t)i;
    if (v <= *m) return;
    *m = v;
    if (i < cv->dirty.x0) cv->dirty.x0 = i;
    if (i >= cv->dirty.x1) cv->dirty.x1 = i + 1;
    if (j < cv->dirty.y0) cv->dirty.y0 = j;
    if (j >= cv->dirty.y1) cv->dirty.y1 = j + 1;
}

/* Composite the mask in colour c at opacity alpha (0..255) and clear it;
 * data marks the pixels as data for the legend's placement. */
static void flush(canvas *cv, const unsigned char c[3], int alpha, int data)
{
    int pw = cv->area.x1 - cv->area.x0;
    for (int j = cv->dirty.y0; j < cv->dirty.y1; j++)
        for (int i = cv->dirty.x0; i < cv->dirty.x1; i++) {
            size_t at = (size_t)j * (size_t)pw + (size_t)i;
            if (!cv->mask[at]) continue;
            blend(cv, cv->area.x0 + i, cv->area.y0 + j, c, (cv->mask[at] * alpha + 127) / 255);
            if (data) cv->ink[at] = 1;
            cv->mask[at] = 0;
        }
    cv->dirty = (rect){pw, cv->area.y1 - cv->area.y0, 0, 0};
}

/* The part of segment a-b inside [xmin, xmax] x [ymin, ymax] (Liang-Barsky);
 * 0 when none is. */
static int clip_segment(long double *ax, long double *ay, long double *bx, long double *by, long double xmin,
                        long double ymin, long double xmax, long double ymax)
{
    long double dx = *bx - *ax, dy = *by - *ay, t0 = 0, t1 = 1;
    long double p[4] = {-dx, dx, -dy, dy}, q[4] = {*ax - xmin, xmax - *ax, *ay - ymin, ymax - *ay};
    for (int k = 0; k < 4; k++) {
        if (p[k] == 0) {
            if (q[k] < 0) return 0;
            continue;
        }
        long double t = q[k] / p[k];
        if (p[k] < 0 && t > t0) t0 = t;
        if (p[k] > 0 && t < t1) t1 = t;
    }
    if (t0 > t1) return 0;
    long double x0 = *ax, y0 = *ay;
    *ax = x0 + t0 * dx;
    *ay = y0 + t0 * dy;
    *bx = x0 + t1 * dx;
    *by = y0 + t1 * dy;
    return 1;
}

/* Distance from (pu, pv) to the segment a-b. */
static double segment_distance(double pu, double pv, double au, double av, double bu, double bv)
{
    double du = bu - au, dv = bv - av, len2 = du * du + dv * dv;
    double t = len2 > 0 ? ((pu - au) * du + (pv - av) * dv) / len2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return hypot(pu - au - t * du, pv - av - t * dv);
}

/* A line of half-width r with round ends from a to b (plot-area pixel
 * coordinates, already clipped near the area), anti-aliased by the distance
 * of each pixel centre. Walks the longer axis so that the work is the
 * length times the width, whatever the direction. */
static void mask_segment(canvas *cv, double ax, double ay, double bx, double by, double r)
{
    int steep = fabs(by - ay) > fabs(bx - ax);
    double au = steep ? ay : ax, av = steep ? ax : ay, bu = steep ? by : bx, bv = steep ? bx : by;
    if (au > bu) {
        double t = au;
        au = bu, bu = t, t = av, av = bv, bv = t;
    }
    int umax = steep ? cv->area.y1 - cv->area.y0 : cv->area.x1 - cv->area.x0;
    int vmax = steep ? cv->area.x1 - cv->area.x0 : cv->area.y1 - cv->area.y0;
    double slope = bu > au ? (bv - av) / (bu - au) : 0;
    int i0 = (int)fmax(0, floor(au - r - 1)), i1 = (int)fmin(umax - 1, ceil(bu + r + 1));
    for (int i = i0; i <= i1; i++) {
        double cu = i + 0.5;
        /* the segment's extent along v near this column */
        double ua = fmax(au, cu - r - 1), ub = fmin(bu, cu + r + 1);
        if (ua > ub) ua = ub = cu < au ? au : bu;
        double va = av + slope * (ua - au), vb = av + slope * (ub - au);
        int j0 = (int)fmax(0, floor(fmin(va, vb) - r - 1)), j1 = (int)fmin(vmax - 1, ceil(fmax(va, vb) + r + 1));
        for (int j = j0; j <= j1; j++) {
            double cov = r + 0.5 - segment_distance(cu, j + 0.5, au, av, bu, bv);
            if (cov > 0) cover(cv, steep ? j : i, steep ? i : j, cov);
        }
    }
}

/* Segment between image coordinates, clipped to the plot area. */
static void mask_line(canvas *cv, long double ax, long double ay, long double bx, long double by, double r)
{
    long double m = r + 2, pw = cv->area.x1 - cv->area.x0, ph = cv->area.y1 - cv->area.y0;
    ax -= cv->area.x0, bx -= cv->area.x0, ay -= cv->area.y0, by -= cv->area.y0;
    if (clip_segment(&ax, &ay, &bx, &by, -m, -m, pw + m, ph + m))
        mask_segment(cv, (double)ax, (double)ay, (double)bx, (double)by, r);
}

/* A filled disc of radius r at an image point. */
static void mask_disc(canvas *cv, long double cx, long double cy, double r)
{
    long double x = cx - cv->area.x0, y = cy - cv->area.y0;
    int pw = cv->area.x1 - cv->area.x0, ph = cv->area.y1 - cv->area.y0;
    if (x < -r - 1 || y < -r - 1 || x > pw + r + 1 || y > ph + r + 1) return;
    double fx = (double)x, fy = (double)y;
    int i0 = (int)fmax(0, floor(fx - r - 1)), i1 = (int)fmin(pw - 1, ceil(fx + r + 1));
    int j0 = (int)fmax(0, floor(fy - r - 1)), j1 = (int)fmin(ph - 1, ceil(fy + r + 1));
    for (int j = j0; j <= j1; j++)
        for (int i = i0; i <= i1; i++) {
            double cov = r + 0.5 - hypot(i + 0.5 - fx, j + 0.5 - fy);
            if (cov > 0) cover(cv, i, j, cov);
        }
}

/* The region between two lines, lo and hi, from column x = ax to bx
 * (image coordinates); each pixel covered by the length of its column
 * inside the region, so slanted edges are smooth. */
static void mask_band(canvas *cv, long double ax, long double alo, long double ahi, long double bx, long double blo,
                      long double bhi)
{
    if (ax == bx) return;
    if (ax > bx) {
        long double t = ax;
        ax = bx, bx = t, t = alo, alo = blo, blo = t, t = ahi, ahi = bhi, bhi = t;
    }
    int pw = cv->area.x1 - cv->area.x0, ph = cv->area.y1 - cv->area.y0;
    long double u0 = ax - cv->area.x0 - 0.5L, u1 = bx - cv->area.x0 - 0.5L;
    if (u1 < 0 || u0 > pw - 1) return;
    int i0 = u0 < 0 ? 0 : (int)ceill(u0), i1 = u1 > pw - 1 ? pw - 1 : (int)floorl(u1);
    for (int i = i0; i <= i1; i++) {
        long double t = (cv->area.x0 + i + 0.5L - ax) / (bx - ax);
        long double lo = alo + t * (blo - alo) - cv->area.y0, hi = ahi + t * (bhi - ahi) - cv->area.y0;
        double top = (double)fminl(fmaxl(fminl(lo, hi), -1), ph + 1);
        double bottom = (double)fminl(fmaxl(fmaxl(lo, hi), -1), ph + 1);
        int j0 = (int)fmax(0, floor(top)), j1 = (int)fmin(ph - 1, floor(bottom));
        for (int j = j0; j <= j1; j++) {
            double cov = fmin(j + 1, bottom) - fmax(j, top);
            if (cov > 0) cover(cv, i, j, cov);
        }
    }
}

/* ---- text ---------------------------------------------------------------------- */

typedef struct font {
    int s;        /* pixels per font pixel */
    int advance;  /* per glyph */
    int height;   /* of a line of text, descenders included */
    int cap;      /* of digits and capitals */
} font;

static int text_width(const font *f, const char *t)
{
    size_t n = strlen(t);
    if (n > MAX_SIDE) n = MAX_SIDE; /* wider than any chart already */
    return n ? (int)n * f->advance - f->s : 0;
}

/* Text with the top left of its first glyph at (x, y); vertical text reads
 * upwards, turned 90 degrees counter-clockwise, starting at (x, y) as the
 * bottom left. */
static void draw_text(canvas *cv, rect clip, const font *f, int x, int y, const char *t, const unsigned char c[3],
                      int vertical)
{
    int s = f->s;
    for (int k = 0; t[k] && k < MAX_SIDE; k++)
        for (int row = 0; row < NB__FONT_H; row++)
            for (int col = 0; col < NB__FONT_W; col++) {
                if (!nb__font_ink((unsigned char)t[k], row, col)) continue;
                int along = k * f->advance + col * s;
                rect r = vertical ? (rect){x + row * s, y - along - s, x + row * s + s, y - along}
                                  : (rect){x + along, y + row * s, x + along + s, y + row * s + s};
                fill(cv, r, clip, c, 255);
            }
}

/* ---- layout -------------------------------------------------------------------- */

typedef struct layout {
    font f;
    int pad, tick, gap;
} layout;

static int max_label_width(const font *f, const axis *a)
{
    int m = 0;
    for (int i = 0; i < a->n; i++) {
        int w = text_width(f, a->label[i]);
        if (w > m) m = w;
    }
    return m;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* x ticks that fit: fewer while neighbouring labels would touch. */
static void fit_x_ticks(const layout *L, const nb__plot_frame *fr, axis *ax)
{
    for (int target = clampi((fr->x1 - fr->x0) / (50 * L->f.s), 2, 10); target >= 1; target--) {
        axis_ticks(ax, target, fr->x1 - fr->x0);
        int ok = 1;
        for (int i = 1; i < ax->n && ok; i++) {
            long double gap = px_of(fr, ax->major[i]) - px_of(fr, ax->major[i - 1]);
            int need = (text_width(&L->f, ax->label[i]) + text_width(&L->f, ax->label[i - 1])) / 2 + 2 * L->f.advance;
            ok = gap >= need;
        }
        if (ok) return;
    }
}

/* Place the plot area and choose the ticks: the margins hold the title,
 * tick labels and axis labels; the y tick labels decide the left margin,
 * the last x tick label the right one. */
static void layout_chart(const nb_plot *p, const layout *L, axis *ax, axis *ay, nb__plot_frame *fr)
{
    const font *f = &L->f;
    fr->y0 = L->pad + (p->title ? f->height + 2 * L->gap : f->cap);
    fr->y1 = p->h - (1 + L->tick + L->gap + f->height + (p->xlabel ? L->gap + f->height : 0) + L->pad);
    axis_ticks(ay, clampi((fr->y1 - fr->y0) / (28 * f->s), 2, 10), fr->y1 - fr->y0);
    fr->x0 = L->pad + (p->ylabel ? f->height + 2 * L->gap : 0) + max_label_width(f, ay) + L->gap + L->tick + 1;
    if (fr->x0 > p->w / 2) fr->x0 = p->w / 2; /* absurd labels are cut, not the plot */
    /* Shrinking the area moves the last label less than the area's edge,
     * so this takes a few rounds; the ticks always match the final area. */
    int right = L->pad + 2 * f->advance;
    for (int round = 0;; round++) {
        fr->x1 = p->w - right;
        fit_x_ticks(L, fr, ax);
        if (ax->n == 0 || round == 8) break;
        long double end = px_of(fr, ax->major[ax->n - 1]) + text_width(f, ax->label[ax->n - 1]) / 2.0L;
        if (end <= p->w - L->pad || right > p->w / 4) break;
        right += (int)ceill(end - (p->w - L->pad));
    }
}

/* ---- drawing ------------------------------------------------------------------- */

static void draw_grid(canvas *cv, const nb__plot_frame *fr, const axis *ax, const axis *ay)
{
    rect a = cv->area;
    for (int i = 0; i < ax->nminor; i++) {
        int x = tick_pixel(px_of(fr, ax->minor[i]), a.x0, a.x1);
        fill(cv, (rect){x, a.y0, x + 1, a.y1}, a, MINOR_GRID, 255);
    }
    for (int i = 0; i < ay->nminor; i++) {
        int y = tick_pixel(py_of(fr, ay->minor[i]), a.y0, a.y1);
        fill(cv, (rect){a.x0, y, a.x1, y + 1}, a, MINOR_GRID, 255);
    }
    for (int i = 0; i < ax->n; i++) {
        int x = tick_pixel(px_of(fr, ax->major[i]), a.x0, a.x1);
        fill(cv, (rect){x, a.y0, x + 1, a.y1}, a, GRID, 255);
    }
    for (int i = 0; i < ay->n; i++) {
        int y = tick_pixel(py_of(fr, ay->major[i]), a.y0, a.y1);
        fill(cv, (rect){a.x0, y, a.x1, y + 1}, a, GRID, 255);
    }
}

/* Point i of s in image coordinates; 0 when it cannot be drawn. */
static int point(const nb__plot_frame *fr, const series *s, int i, long double *x, long double *y, long double *y2)
{
    double ux = to_axis(fr->xlog, s->x[i]), uy = to_axis(fr->ylog, s->y[i]);
    double uy2 = s->y2 ? to_axis(fr->ylog, s->y2[i]) : uy;
    if (isnan(ux) || isnan(uy) || isnan(uy2)) return 0;
    *x = px_of(fr, ux);
    *y = py_of(fr, uy);
    *y2 = py_of(fr, uy2);
    return 1;
}

static void draw_band(canvas *cv, const nb__plot_frame *fr, const series *s)
{
    long double px = 0, plo = 0, phi = 0, x = 0, lo = 0, hi = 0;
    int prev = 0;
    for (int i = 0; i < s->n; i++) {
        int ok = point(fr, s, i, &x, &lo, &hi);
        if (ok && prev) mask_band(cv, px, plo, phi, x, lo, hi);
        prev = ok, px = x, plo = lo, phi = hi;
    }
    flush(cv, nb__plot_palette[s->color], BAND_ALPHA, 0);
}

/* Dashes from x = a to b along row y (image coordinates). */
static void mask_dashes(canvas *cv, double a, double b, long double y, const layout *L, double r)
{
    double dash = 8 * L->f.s, period = 13 * L->f.s;
    for (double x = a; x < b; x += period) mask_line(cv, x + r, y, fmin(x + dash, b) - r, y, r);
}

static void draw_series(canvas *cv, const nb__plot_frame *fr, const series *s, const layout *L)
{
    double r = fr->line_width / 2.0;
    if (s->kind == SERIES_HLINE) {
        double u = to_axis(fr->ylog, s->level);
        if (isnan(u)) return;
        mask_dashes(cv, fr->x0, fr->x1, py_of(fr, u), L, r);
        flush(cv, nb__plot_grey, 255, 1);
        return;
    }
    long double px = 0, py = 0, x = 0, y = 0, unused;
    int prev = 0;
    for (int i = 0; i < s->n; i++) {
        int ok = point(fr, s, i, &x, &y, &unused);
        int next = i + 1 < s->n && point(fr, s, i + 1, &unused, &unused, &unused);
        if (ok && prev) mask_line(cv, px, py, x, y, r);
        else if (ok && !next) mask_line(cv, x, y, x, y, r); /* a lone point is a dot */
        if (ok && s->kind == SERIES_POINTS) mask_disc(cv, x, y, 1.8 * fr->line_width);
        prev = ok, px = x, py = y;
    }
    flush(cv, nb__plot_palette[s->color], 255, 1);
}

static void draw_axes(canvas *cv, const nb__plot_frame *fr, const axis *ax, const axis *ay, const layout *L)
{
    const font *f = &L->f;
    rect a = cv->area, all = whole(cv);
    fill(cv, (rect){a.x0 - 1, a.y0 - 1, a.x1 + 1, a.y0}, all, FRAME, 255);
    fill(cv, (rect){a.x0 - 1, a.y1, a.x1 + 1, a.y1 + 1}, all, FRAME, 255);
    fill(cv, (rect){a.x0 - 1, a.y0, a.x0, a.y1}, all, FRAME, 255);
    fill(cv, (rect){a.x1, a.y0, a.x1 + 1, a.y1}, all, FRAME, 255);
    for (int i = 0; i < ax->nminor; i++) {
        int x = tick_pixel(px_of(fr, ax->minor[i]), a.x0, a.x1);
        fill(cv, (rect){x, a.y1 + 1, x + 1, a.y1 + 1 + L->tick / 2}, all, FRAME, 255);
    }
    for (int i = 0; i < ay->nminor; i++) {
        int y = tick_pixel(py_of(fr, ay->minor[i]), a.y0, a.y1);
        fill(cv, (rect){a.x0 - 1 - L->tick / 2, y, a.x0 - 1, y + 1}, all, FRAME, 255);
    }
    for (int i = 0; i < ax->n; i++) {
        int x = tick_pixel(px_of(fr, ax->major[i]), a.x0, a.x1);
        fill(cv, (rect){x, a.y1 + 1, x + 1, a.y1 + 1 + L->tick}, all, FRAME, 255);
        draw_text(cv, all, f, x - text_width(f, ax->label[i]) / 2, a.y1 + 1 + L->tick + L->gap, ax->label[i],
                  TEXT, 0);
    }
    for (int i = 0; i < ay->n; i++) {
        int y = tick_pixel(py_of(fr, ay->major[i]), a.y0, a.y1);
        fill(cv, (rect){a.x0 - 1 - L->tick, y, a.x0 - 1, y + 1}, all, FRAME, 255);
        draw_text(cv, all, f, a.x0 - 1 - L->tick - L->gap - text_width(f, ay->label[i]), y - f->cap / 2,
                  ay->label[i], TEXT, 0);
    }
}

static void draw_titles(canvas *cv, const nb_plot *p, const layout *L)
{
    const font *f = &L->f;
    rect a = cv->area, all = whole(cv);
    int mid = (a.x0 + a.x1) / 2;
    if (p->title) {
        int x = mid - text_width(f, p->title) / 2;
        if (x < L->pad) x = L->pad;
        draw_text(cv, all, f, x, L->pad, p->title, TEXT, 0);
        draw_text(cv, all, f, x + 1, L->pad, p->title, TEXT, 0); /* bold */
    }
    if (p->xlabel) {
        int x = mid - text_width(f, p->xlabel) / 2;
        draw_text(cv, all, f, x < L->pad ? L->pad : x, p->h - L->pad - f->height, p->xlabel, TEXT, 0);
    }
    if (p->ylabel) {
        int y = (a.y0 + a.y1) / 2 + text_width(f, p->ylabel) / 2;
        draw_text(cv, all, f, L->pad, y > p->h - L->pad ? p->h - L->pad : y, p->ylabel, TEXT, 1);
    }
}

static long ink_in(const canvas *cv, rect r)
{
    int pw = cv->area.x1 - cv->area.x0;
    long n = 0;
    for (int y = r.y0 > cv->area.y0 ? r.y0 : cv->area.y0; y < r.y1 && y < cv->area.y1; y++)
        for (int x = r.x0 > cv->area.x0 ? r.x0 : cv->area.x0; x < r.x1 && x < cv->area.x1; x++)
            n += cv->ink[(size_t)(y - cv->area.y0) * (size_t)pw + (size_t)(x - cv->area.x0)];
    return n;
}

/* The legend: a box with a sample and the label of each named series, in
 * the corner of the plot area where it covers the least data (top right,
 * top left, bottom right, bottom left on ties). */
static void draw_legend(canvas *cv, const nb_plot *p, const layout *L, nb__plot_frame *fr)
{
    const font *f = &L->f;
    int rows = 0, labelw = 0;
    for (int k = 0; k < p->ns; k++)
        if (p->s[k].label && p->s[k].kind != SERIES_BAND) {
            rows++;
            int w = text_width(f, p->s[k].label);
            if (w > labelw) labelw = w;
        }
    if (!rows) return;
    int inset = 2 * L->gap, pad = 2 * L->gap, sample = 4 * f->advance, rowh = f->height + L->gap;
    int bw = pad + sample + 2 * L->gap + labelw + pad, bh = 2 * pad + rows * rowh - L->gap;
    rect a = cv->area;
    /* a legend larger than the area keeps its top left corner inside */
    int left = a.x0 + inset, right = a.x1 - inset - bw > left ? a.x1 - inset - bw : left;
    int top = a.y0 + inset, bottom = a.y1 - inset - bh > top ? a.y1 - inset - bh : top;
    rect corners[4] = {
        {right, top, right + bw, top + bh},
        {left, top, left + bw, top + bh},
        {right, bottom, right + bw, bottom + bh},
        {left, bottom, left + bw, bottom + bh},
    };
    rect box = corners[0];
    long best = ink_in(cv, box);
    for (int c = 1; c < 4; c++) {
        long n = ink_in(cv, corners[c]);
        if (n < best) best = n, box = corners[c];
    }
    fill(cv, box, a, WHITE, LEGEND_ALPHA);
    fill(cv, (rect){box.x0, box.y0, box.x1, box.y0 + 1}, a, LEGEND_EDGE, 255);
    fill(cv, (rect){box.x0, box.y1 - 1, box.x1, box.y1}, a, LEGEND_EDGE, 255);
    fill(cv, (rect){box.x0, box.y0, box.x0 + 1, box.y1}, a, LEGEND_EDGE, 255);
    fill(cv, (rect){box.x1 - 1, box.y0, box.x1, box.y1}, a, LEGEND_EDGE, 255);
    rect clip = {box.x0 + 1, box.y0 + 1, box.x1 - 1, box.y1 - 1};
    if (clip.x0 < a.x0) clip.x0 = a.x0;
    if (clip.y0 < a.y0) clip.y0 = a.y0;
    if (clip.x1 > a.x1) clip.x1 = a.x1;
    if (clip.y1 > a.y1) clip.y1 = a.y1;
    double r = fr->line_width / 2.0;
    int y = box.y0 + pad;
    for (int k = 0; k < p->ns; k++) {
        const series *s = &p->s[k];
        if (!s->label || s->kind == SERIES_BAND) continue;
        double cy = y + f->cap / 2 + 0.5, x0 = box.x0 + pad, x1 = x0 + sample;
        if (s->kind == SERIES_HLINE) {
            mask_dashes(cv, x0, x1, cy, L, r);
            flush(cv, nb__plot_grey, 255, 0);
        } else {
            mask_line(cv, x0 + r, cy, x1 - r, cy, r);
            if (s->kind == SERIES_POINTS) mask_disc(cv, (x0 + x1) / 2, cy, 1.8 * fr->line_width);
            flush(cv, nb__plot_palette[s->color], 255, 0);
        }
        draw_text(cv, clip, f, (int)x1 + 2 * L->gap, y, s->label, TEXT, 0);
        y += rowh;
    }
    fr->legend[0] = box.x0, fr->legend[1] = box.y0, fr->legend[2] = box.x1, fr->legend[3] = box.y1;
}

/* ---- render and save ----------------------------------------------------------- */

nb_status nb__plot_render(const nb_plot *p, unsigned char **rgb, nb__plot_frame *fr)
{
    if (!p || !rgb || !fr) return nb__fail(NB_ERR_ARG, "plot render: NULL argument");
    *rgb = NULL;
    memset(fr, 0, sizeof *fr);
    int s = clampi(p->w / 400 < p->h / 250 ? p->w / 400 : p->h / 250, 1, 4);
    layout L = {{s, NB__FONT_ADVANCE * s, NB__FONT_H * s, NB__FONT_CAP * s}, 5 * s, 4 * s, 3 * s};
    axis *axes = NB_MALLOC(2 * sizeof *axes);
    if (!axes) return nb__fail(NB_ERR_NOMEM, "plot render: out of memory");
    axis *ax = &axes[0], *ay = &axes[1];
    ax->log = fr->xlog = p->xscale == NB_PLOT_LOG;
    ay->log = fr->ylog = p->yscale == NB_PLOT_LOG;
    double mn, mx;
    data_range(p, 0, &mn, &mx);
    axis_range(ax, p->xlim, mn, mx);
    data_range(p, 1, &mn, &mx);
    axis_range(ay, p->ylim, mn, mx);
    fr->xlo = ax->lo, fr->xhi = ax->hi, fr->ylo = ay->lo, fr->yhi = ay->hi;
    fr->scale = s;
    fr->line_width = s > 2 ? s : 2;
    layout_chart(p, &L, ax, ay, fr);

    size_t pw = (size_t)(fr->x1 - fr->x0), ph = (size_t)(fr->y1 - fr->y0);
    canvas cv = {NB_MALLOC((size_t)p->w * (size_t)p->h * 3), p->w, p->h, {fr->x0, fr->y0, fr->x1, fr->y1},
                 NB_MALLOC(pw * ph), NB_MALLOC(pw * ph), {(int)pw, (int)ph, 0, 0}};
    if (!cv.rgb || !cv.mask || !cv.ink) {
        NB_FREE(cv.rgb);
        NB_FREE(cv.mask);
        NB_FREE(cv.ink);
        NB_FREE(axes);
        return nb__fail(NB_ERR_NOMEM, "plot render: out of memory for %dx%d pixels", p->w, p->h);
    }
    memset(cv.rgb, 255, (size_t)p->w * (size_t)p->h * 3);
    memset(cv.mask, 0, pw * ph);
    memset(cv.ink, 0, pw * ph);
    draw_grid(&cv, fr, ax, ay);
    for (int k = 0; k < p->ns; k++)
        if (p->s[k].kind == SERIES_BAND) draw_band(&cv, fr, &p->s[k]);
    for (int k = 0; k < p->ns; k++)
        if (p->s[k].kind == SERIES_HLINE) draw_series(&cv, fr, &p->s[k], &L);
    for (int k = 0; k < p->ns; k++)
        if (p->s[k].kind == SERIES_LINE || p->s[k].kind == SERIES_POINTS) draw_series(&cv, fr, &p->s[k], &L);
    draw_legend(&cv, p, &L, fr);
    draw_axes(&cv, fr, ax, ay, &L);
    draw_titles(&cv, p, &L);
    NB_FREE(cv.mask);
    NB_FREE(cv.ink);
    NB_FREE(axes);
    *rgb = cv.rgb;
    return NB_OK;
}

nb_status nb_plot_save(const nb_plot *p, const char *path)
{
    if (!p || !path || !*path) return nb__fail(NB_ERR_ARG, "plot save: NULL plot or path");
    unsigned char *rgb;
    nb__plot_frame fr;
    nb_status s = nb__plot_render(p, &rgb, &fr);
    if (s) return s;
    s = nb_png_write_rgb(path, p->w, p->h, rgb);
    NB_FREE(rgb);
    return s;
}
