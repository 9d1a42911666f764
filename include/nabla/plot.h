/* nabla/plot.h — charts as PNG files, for training curves and experiments.
 *
 * A chart is a plot area with axes, ticks and tick labels chosen from the
 * data ("nice" steps 1, 2, 5 x 10^k; decades on a log axis), an optional
 * title and axis labels, and any number of series drawn in the order they
 * were added, each in the next colour of a fixed colour-blind-safe palette,
 * named in a legend. Text uses a built-in bitmap font (printable ASCII; any
 * other byte is drawn as '?'), so nothing but libpng is needed.
 *
 *     nb_plot *p = nb_plot_new(800, 500);
 *     nb_plot_title(p, "training loss");
 *     nb_plot_labels(p, "step", "loss");
 *     nb_plot_line(p, "sgd", steps, loss_sgd, n);
 *     nb_plot_line(p, "adam", steps, loss_adam, n);
 *     if (nb_plot_save(p, "loss.png") != NB_OK) puts(nb_last_error());
 *     nb_plot_free(p);
 *
 * Points with a non-finite x or y (or one <= 0 on a log axis) are skipped
 * and break a line in two (a point alone is a dot). A chart with no finite
 * point still saves (empty axes over [0, 1], or 1..10 on a log axis). The
 * legend sits in the corner of the plot area that hides the least data;
 * text is drawn at 2x from 800 x 500 up. The functions copy what they are given; the caller keeps
 * its arrays. Errors: NB_ERR_ARG (NULL, n < 0, a bad size or scale) and
 * NB_ERR_NOMEM, with the chart unchanged; nb_plot_save adds NB_ERR_IO. */
#ifndef NABLA_PLOT_H
#define NABLA_PLOT_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nb_plot nb_plot;

/* (The type is not called nb_plot_scale: that name is the function below.) */
typedef enum nb_plot_axis_scale { NB_PLOT_LINEAR = 0, NB_PLOT_LOG = 1 } nb_plot_axis_scale;

/* A chart of width x height pixels, each in [200, 4096]. NULL on error
 * (nb_last_error). Free it with nb_plot_free. */
nb_plot  *nb_plot_new(int width, int height);
void      nb_plot_free(nb_plot *p);

/* Title above the plot area; x label below it, y label rotated along the
 * left side. NULL or "" removes one. */
nb_status nb_plot_title(nb_plot *p, const char *title);
nb_status nb_plot_labels(nb_plot *p, const char *xlabel, const char *ylabel);
/* Linear (the default) or log10 axes. */
nb_status nb_plot_scale(nb_plot *p, nb_plot_axis_scale x, nb_plot_axis_scale y);
/* Fix an axis range; NAN for an end chosen from the data (with a 5%
 * margin). Each end finite or NAN, lo < hi when both are given, and > 0 on
 * a log axis (nb_plot_scale checks limits set before it too). */
nb_status nb_plot_xlim(nb_plot *p, double lo, double hi);
nb_status nb_plot_ylim(nb_plot *p, double lo, double hi);

/* A series of n points joined by a 2-pixel line (n = 0 with NULL arrays is
 * an empty series). label NULL: not in the legend. */
nb_status nb_plot_line(nb_plot *p, const char *label, const double *x, const double *y, int n);
/* A line with a marker on each point (for sweeps with few points). */
nb_status nb_plot_line_points(nb_plot *p, const char *label, const double *x, const double *y, int n);
/* A shaded band between ylo and yhi (a spread across seeds) in the colour
 * of the next series, drawn under the lines; not in the legend. Add it just
 * before the line it belongs to. */
nb_status nb_plot_band(nb_plot *p, const double *x, const double *ylo, const double *yhi, int n);
/* A dashed horizontal reference line across the plot (a baseline, a
 * target), in grey, named in the legend when label is not NULL. y must be
 * finite; it is not drawn where a log axis cannot show it. */
nb_status nb_plot_hline(nb_plot *p, const char *label, double y);

/* Render and write an RGB PNG, atomically (temporary file, fsync, rename),
 * as nb_png_write_gray does. */
nb_status nb_plot_save(const nb_plot *p, const char *path);

/* Write w x h 8-bit RGB pixels (row-major, 3*w*h bytes) as a PNG,
 * atomically. Errors as nb_png_write_gray. */
nb_status nb_png_write_rgb(const char *path, int w, int h, const uint8_t *rgb);

#ifdef __cplusplus
}
#endif
#endif
