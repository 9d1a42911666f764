/* Private to the chart code (plot.c, font.c) and its tests: the font, the
 * palette, tick selection and labels, and a render that hands back pixels
 * and the layout so tests can look at what was drawn. */
#ifndef NABLA_PLOT_INTERNAL_H
#define NABLA_PLOT_INTERNAL_H

#include "nabla/plot.h"
#include <stddef.h>

/* ---- font (font.c) --------------------------------------------------------- */
#define NB__FONT_W 5       /* ink columns of a glyph */
#define NB__FONT_H 9       /* rows: 7 above the baseline and 2 of descenders */
#define NB__FONT_CAP 7     /* height of capitals and digits */
#define NB__FONT_ADVANCE 6 /* columns from one glyph to the next */

/* 1 where the glyph of byte c has ink at (row, col); a byte outside 32..126
 * is drawn as '?'. */
int nb__font_ink(unsigned char c, int row, int col);

/* ---- palette ---------------------------------------------------------------- */
#define NB__PLOT_NCOLORS 8
/* Series colours, in the order series take them (Okabe and Ito's
 * colour-blind-safe set, yellow darkened to show on white). */
extern const unsigned char nb__plot_palette[NB__PLOT_NCOLORS][3];
/* The colour of reference lines (nb_plot_hline). */
extern const unsigned char nb__plot_grey[3];

/* ---- ticks -------------------------------------------------------------------- */
#define NB__PLOT_MAX_TICKS 64
#define NB__PLOT_LABEL 32

/* Ticks at multiples of a step 1, 2 or 5 x 10^k inside [lo, hi] (lo < hi,
 * finite), the step chosen so that about `target` intervals fit. Writes at
 * most `cap` values to ticks and the step to *step; returns the count. */
int nb__plot_linear_ticks(double lo, double hi, int target, double *ticks, int cap, double *step);

/* Labels for linear ticks `step` apart: fixed notation with as many
 * decimals as the step needs ("0.0", "0.5", "1.0") when the largest |tick|
 * is in [1e-4, 1e6), otherwise e-notation with the digits the step needs
 * ("1e-05", "2.5e+07", and "0" for 0). */
void nb__plot_linear_labels(const double *ticks, int n, double step, char (*labels)[NB__PLOT_LABEL]);

/* Label of the value 10^k: "0.001", "1", "100000", or "1e-05", "1e+06"
 * outside [1e-4, 1e6) (the switch points of printf's %g). */
void nb__plot_decade_label(int k, char *buf, size_t size);

/* ---- render ------------------------------------------------------------------- */
typedef struct nb__plot_frame {
    int x0, y0, x1, y1;        /* plot area inside the frame: [x0, x1) x [y0, y1) */
    double xlo, xhi, ylo, yhi; /* axis ranges, in log10 units on a log axis */
    int xlog, ylog;
    int scale;                 /* pixels per font pixel */
    int line_width;
    int legend[4];             /* legend box x0, y0, x1, y1 (exclusive); zeros without one */
} nb__plot_frame;

/* Render p into a malloc'd w*h*3 RGB buffer (the caller frees it) and
 * describe the layout in *fr. Errors: NB_ERR_ARG (NULL), NB_ERR_NOMEM. */
nb_status nb__plot_render(const nb_plot *p, unsigned char **rgb, nb__plot_frame *fr);

/* Pixel coordinates (continuous: pixel i covers [i, i+1)) of the data
 * point (x, y) in a rendered frame; NAN where a log axis gets x <= 0. */
double nb__plot_map_x(const nb__plot_frame *fr, double x);
double nb__plot_map_y(const nb__plot_frame *fr, double y);

#endif
