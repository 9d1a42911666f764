/* Charts (nabla/plot.h): argument checks, saving, tick values and labels,
 * the font, and pixel checks on rendered charts that prove the drawing:
 * where a line lands, that NaN splits it, that a log axis spaces decades
 * evenly, palette colours, bands, dashed reference lines, the legend's
 * corner, title and axis label text. */
#include "test.h"
#include "../src/io/plot_internal.h"
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- pixels -------------------------------------------------------------------- */

typedef struct img {
    unsigned char *rgb;
    int w, h;
    nb__plot_frame fr;
} img;

static int render(const nb_plot *p, int w, int h, img *im)
{
    im->w = w;
    im->h = h;
    im->rgb = NULL;
    nb_status s = nb__plot_render(p, &im->rgb, &im->fr);
    if (s) nbt_fail(__FILE__, __LINE__, "render failed: %s", nb_last_error());
    return s == NB_OK;
}

static const unsigned char *at(const img *im, int x, int y) { return im->rgb + ((size_t)y * im->w + x) * 3; }

static int is(const unsigned char *px, const unsigned char c[3]) { return px[0] == c[0] && px[1] == c[1] && px[2] == c[2]; }

/* Anything but white, greys and black: only data is drawn in colour. */
static int colourful(const unsigned char *px)
{
    int mx = px[0], mn = px[0];
    for (int k = 1; k < 3; k++) {
        if (px[k] > mx) mx = px[k];
        if (px[k] < mn) mn = px[k];
    }
    return mx - mn > 24;
}

static int dark(const unsigned char *px) { return px[0] < 100 && px[1] < 100 && px[2] < 100; }

static int count_dark(const img *im, int x0, int y0, int x1, int y1)
{
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) n += dark(at(im, x, y));
    return n;
}

static int count_colour(const img *im, const unsigned char c[3])
{
    int n = 0;
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++) n += is(at(im, x, y), c);
    return n;
}

/* ---- arguments and files ------------------------------------------------------- */

TEST(plot_new_checks_size)
{
    int bad[][2] = {{199, 500}, {500, 199}, {4097, 500}, {500, 4097}, {0, 0}, {-800, 500}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nb_clear_error();
        CHECK(nb_plot_new(bad[i][0], bad[i][1]) == NULL);
        CHECK(strstr(nb_last_error(), "size"));
    }
    nb_plot *a = nb_plot_new(200, 200), *b = nb_plot_new(4096, 200);
    CHECK(a && b);
    nb_plot_free(a);
    nb_plot_free(b);
    nb_plot_free(NULL);
}

TEST(plot_bad_arguments_leave_chart_usable)
{
    double x[3] = {1, 2, 3}, y[3] = {4, 5, 6};
    nb_plot *p = nb_plot_new(400, 300);
    CHECK(p);
    CHECK_ERR(nb_plot_line(NULL, "a", x, y, 3), NB_ERR_ARG, "NULL plot");
    CHECK_ERR(nb_plot_line(p, "a", x, y, -1), NB_ERR_ARG, "negative");
    CHECK_ERR(nb_plot_line_points(p, "a", NULL, y, 3), NB_ERR_ARG, "NULL array");
    CHECK_ERR(nb_plot_band(p, x, y, NULL, 3), NB_ERR_ARG, "NULL array");
    CHECK_ERR(nb_plot_hline(p, "h", NAN), NB_ERR_ARG, "not finite");
    CHECK_ERR(nb_plot_title(NULL, "t"), NB_ERR_ARG, "NULL plot");
    CHECK_ERR(nb_plot_labels(NULL, "x", "y"), NB_ERR_ARG, "NULL plot");
    CHECK_ERR(nb_plot_scale(p, (nb_plot_axis_scale)2, NB_PLOT_LINEAR), NB_ERR_ARG, "NB_PLOT_LOG");
    CHECK_ERR(nb_plot_xlim(p, 2, 1), NB_ERR_ARG, "below");
    CHECK_ERR(nb_plot_xlim(p, 1, 1), NB_ERR_ARG, "below");
    CHECK_ERR(nb_plot_ylim(p, 0, INFINITY), NB_ERR_ARG, "finite");
    CHECK_ERR(nb_plot_save(p, NULL), NB_ERR_ARG, "NULL");
    CHECK_ERR(nb_plot_save(NULL, nbt_tmp_path("x.png")), NB_ERR_ARG, "NULL");
    CHECK_OK(nb_plot_line(p, "empty", NULL, NULL, 0));

    /* A log axis needs positive limits, whichever is set first. */
    CHECK_OK(nb_plot_xlim(p, -1, 5));
    CHECK_ERR(nb_plot_scale(p, NB_PLOT_LOG, NB_PLOT_LINEAR), NB_ERR_ARG, "not positive on a log axis");
    CHECK_OK(nb_plot_line(p, "ok", x, y, 3));
    img im;
    CHECK(render(p, 400, 300, &im));
    CHECK(!im.fr.xlog && im.fr.xlo == -1 && im.fr.xhi == 5); /* unchanged by the failed calls */
    free(im.rgb);
    CHECK_OK(nb_plot_ylim(p, 1, 100));
    CHECK_OK(nb_plot_scale(p, NB_PLOT_LINEAR, NB_PLOT_LOG));
    CHECK_ERR(nb_plot_ylim(p, 0, 10), NB_ERR_ARG, "not positive");
    CHECK_ERR(nb_plot_ylim(p, NAN, -3), NB_ERR_ARG, "not positive");
    CHECK(render(p, 400, 300, &im));
    CHECK(im.fr.ylog && im.fr.ylo == 0 && im.fr.yhi == 2);
    free(im.rgb);
    CHECK_OK(nb_plot_save(p, nbt_tmp_path("usable.png")));
    nb_plot_free(p);
}

TEST(plot_save_to_missing_directory_fails_cleanly)
{
    nb_plot *p = nb_plot_new(300, 200);
    CHECK(p);
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/no-such-dir", nbt_tmpdir());
    snprintf(path, sizeof path, "%s/chart.png", dir);
    CHECK_ERR(nb_plot_save(p, path), NB_ERR_IO, "no-such-dir");
    CHECK(access(dir, F_OK) != 0 && access(path, F_OK) != 0);
    nb_plot_free(p);
}

TEST(plot_saved_chart_reads_back_without_leftovers)
{
    double x[4] = {0, 1, 2, 3}, y[4] = {1, 3, 2, 4};
    nb_plot *p = nb_plot_new(640, 480);
    CHECK(p);
    CHECK_OK(nb_plot_title(p, "read back"));
    CHECK_OK(nb_plot_line(p, "y", x, y, 4));
    char dir[512], path[600], again[600];
    snprintf(dir, sizeof dir, "%s/saved", nbt_tmpdir());
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "%s/a.png", dir);
    snprintf(again, sizeof again, "%s/b.png", dir);
    CHECK_OK(nb_plot_save(p, path));
    CHECK_OK(nb_plot_save(p, again));
    int w, h;
    unsigned char *gray;
    CHECK_OK(nb_png_read_gray(path, &w, &h, &gray));
    CHECK(w == 640 && h == 480);
    img im;
    CHECK(render(p, 640, 480, &im));
    CHECK(gray[0] == 255);                                                 /* white background */
    CHECK(gray[(size_t)((im.fr.y0 + im.fr.y1) / 2) * w + im.fr.x0 - 1] < 100); /* the frame */
    free(gray);
    free(im.rgb);
    /* the same chart gives the same bytes, and no temporary file stays */
    FILE *fa = fopen(path, "rb"), *fb = fopen(again, "rb");
    CHECK(fa && fb);
    int same = 1, ca, cb;
    do {
        ca = fgetc(fa), cb = fgetc(fb);
        same &= ca == cb;
    } while (ca != EOF && cb != EOF);
    fclose(fa);
    fclose(fb);
    CHECK(same);
    DIR *d = opendir(dir);
    CHECK(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) files += e->d_name[0] != '.';
    closedir(d);
    CHECK_MSG(files == 2, "%d files in %s, expected a.png and b.png", files, dir);
    nb_plot_free(p);
}

/* ---- pixels of rendered charts ------------------------------------------------- */

TEST(plot_horizontal_line_lands_on_its_row_only)
{
    double x[2] = {0, 10}, y[2] = {0.25, 0.25};
    nb_plot *p = nb_plot_new(600, 400);
    CHECK(p);
    CHECK_OK(nb_plot_xlim(p, 0, 10));
    CHECK_OK(nb_plot_ylim(p, 0, 1));
    CHECK_OK(nb_plot_line(p, NULL, x, y, 2));
    img im;
    CHECK(render(p, 600, 400, &im));
    const nb__plot_frame *fr = &im.fr;
    double ly = nb__plot_map_y(fr, 0.25);
    CHECK_NEAR(ly, fr->y1 - 0.25 * (fr->y1 - fr->y0), 0, 1e-9);
    CHECK_NEAR(nb__plot_map_x(fr, 10), fr->x1, 0, 1e-9);
    int row = (int)floor(ly);
    for (int x = fr->x0; x < fr->x1; x++)
        CHECK_MSG(is(at(&im, x, row), nb__plot_palette[0]), "column %d of row %d is not the line", x, row);
    for (int yy = 0; yy < im.h; yy++)
        for (int xx = 0; xx < im.w; xx++)
            if (fabs(yy + 0.5 - ly) > 1.5) CHECK_MSG(!colourful(at(&im, xx, yy)), "colour at %d,%d", xx, yy);
    free(im.rgb);
    nb_plot_free(p);
}

TEST(plot_nan_splits_a_line)
{
    double x[11], y[11];
    for (int i = 0; i <= 10; i++) x[i] = i, y[i] = 0.5;
    y[5] = NAN;
    nb_plot *p = nb_plot_new(500, 300);
    CHECK(p);
    CHECK_OK(nb_plot_ylim(p, 0, 1));
    CHECK_OK(nb_plot_line(p, NULL, x, y, 11));
    img im;
    CHECK(render(p, 500, 300, &im));
    int row = (int)floor(nb__plot_map_y(&im.fr, 0.5));
    CHECK(is(at(&im, (int)nb__plot_map_x(&im.fr, 2), row), nb__plot_palette[0]));
    CHECK(is(at(&im, (int)nb__plot_map_x(&im.fr, 8), row), nb__plot_palette[0]));
    int gap0 = (int)nb__plot_map_x(&im.fr, 4) + 3, gap1 = (int)nb__plot_map_x(&im.fr, 6) - 3;
    CHECK(gap1 - gap0 > 20);
    for (int xx = gap0; xx <= gap1; xx++)
        for (int yy = row - 3; yy <= row + 3; yy++) CHECK_MSG(!colourful(at(&im, xx, yy)), "colour at %d,%d", xx, yy);
    free(im.rgb);
    nb_plot_free(p);
}

/* Centres of the runs of pixels in colour c along a row. */
static int runs(const img *im, int row, const unsigned char c[3], double *centres, int cap)
{
    int n = 0;
    for (int x = 0; x < im->w && n < cap; x++) {
        if (!is(at(im, x, row), c)) continue;
        int start = x;
        while (x < im->w && is(at(im, x, row), c)) x++;
        centres[n++] = (start + x) / 2.0;
    }
    return n;
}

TEST(plot_log_axis_spaces_decades_evenly)
{
    double x[4] = {1, 10, 100, 1000}, y[4] = {1, 1, 1, 1};
    nb_plot *p = nb_plot_new(800, 500);
    CHECK(p);
    CHECK_OK(nb_plot_scale(p, NB_PLOT_LOG, NB_PLOT_LINEAR));
    CHECK_OK(nb_plot_line_points(p, NULL, x, y, 4));
    img im;
    CHECK(render(p, 800, 500, &im));
    CHECK(im.fr.xlog && im.fr.xlo < 0 && im.fr.xhi > 3);
    CHECK(isnan(nb__plot_map_x(&im.fr, 0)) && isnan(nb__plot_map_x(&im.fr, -1)));
    /* Above the 2-pixel line only the markers show: four evenly spaced runs. */
    int row = (int)floor(nb__plot_map_y(&im.fr, 1)) - 3;
    double c[8];
    CHECK(runs(&im, row, nb__plot_palette[0], c, 8) == 4);
    for (int k = 0; k < 4; k++) CHECK_NEAR(c[k], nb__plot_map_x(&im.fr, x[k]), 0, 1.0);
    CHECK_NEAR(c[1] - c[0], c[3] - c[2], 0, 1.0);
    CHECK_NEAR(c[2] - c[1], c[3] - c[2], 0, 1.0);
    CHECK(c[1] - c[0] > 100);
    /* grid lines at the decades, lighter ones at 2..9 x 10^k */
    static const unsigned char grid[3] = {226, 226, 226}, minor[3] = {242, 242, 242};
    int top = im.fr.y0 + 2;
    CHECK(is(at(&im, (int)floor(nb__plot_map_x(&im.fr, 10)), top), grid));
    CHECK(is(at(&im, (int)floor(nb__plot_map_x(&im.fr, 100)), top), grid));
    CHECK(is(at(&im, (int)floor(nb__plot_map_x(&im.fr, 20)), top), minor));
    CHECK(is(at(&im, (int)floor(nb__plot_map_x(&im.fr, 500)), top), minor));
    CHECK(is(at(&im, (int)floor(nb__plot_map_x(&im.fr, 15)), top), (const unsigned char[3]){255, 255, 255}));
    free(im.rgb);
    /* the same points on a linear axis crowd at the left */
    CHECK_OK(nb_plot_scale(p, NB_PLOT_LINEAR, NB_PLOT_LINEAR));
    CHECK(render(p, 800, 500, &im));
    CHECK(nb__plot_map_x(&im.fr, 100) - nb__plot_map_x(&im.fr, 1) < 0.2 * (im.fr.x1 - im.fr.x0));
    free(im.rgb);
    nb_plot_free(p);
}

TEST(plot_series_take_palette_colours)
{
    double x[2] = {0, 10}, a[2] = {1, 1}, b[2] = {3, 3}, c[2] = {5, 5}, lo[2] = {2, 2}, hi[2] = {4, 4};
    nb_plot *p = nb_plot_new(600, 400);
    CHECK(p);
    CHECK_OK(nb_plot_ylim(p, 0, 6));
    CHECK_OK(nb_plot_line(p, "a", x, a, 2));
    CHECK_OK(nb_plot_band(p, x, lo, hi, 2)); /* in the colour of b */
    CHECK_OK(nb_plot_line(p, "b", x, b, 2));
    CHECK_OK(nb_plot_hline(p, "ref", 5.5));  /* grey, takes no colour */
    CHECK_OK(nb_plot_line(p, "c", x, c, 2));
    img im;
    CHECK(render(p, 600, 400, &im));
    int n0 = count_colour(&im, nb__plot_palette[0]), n1 = count_colour(&im, nb__plot_palette[1]),
        n2 = count_colour(&im, nb__plot_palette[2]), n3 = count_colour(&im, nb__plot_palette[3]);
    CHECK_MSG(n0 > 300 && n1 > 300 && n2 > 300 && n3 == 0, "palette counts %d %d %d %d", n0, n1, n2, n3);
    /* the band: palette colour 1 over white at the band's opacity, under the line */
    int xm = (im.fr.x0 + im.fr.x1) / 2, yb = (int)nb__plot_map_y(&im.fr, 2.5);
    const unsigned char *px = at(&im, xm, yb);
    CHECK_MSG(colourful(px) && !is(px, nb__plot_palette[1]) && px[0] > nb__plot_palette[1][0],
              "band pixel %d %d %d", px[0], px[1], px[2]);
    CHECK(is(at(&im, xm, (int)nb__plot_map_y(&im.fr, 3)), nb__plot_palette[1]));
    free(im.rgb);
    nb_plot_free(p);
}

TEST(plot_hline_is_dashed_grey)
{
    nb_plot *p = nb_plot_new(600, 400);
    CHECK(p);
    CHECK_OK(nb_plot_ylim(p, 0, 1));
    CHECK_OK(nb_plot_hline(p, NULL, 0.3));
    img im;
    CHECK(render(p, 600, 400, &im));
    int row = (int)floor(nb__plot_map_y(&im.fr, 0.3)), grey = 0, changes = 0;
    for (int x = im.fr.x0; x < im.fr.x1; x++) {
        int g = is(at(&im, x, row), nb__plot_grey);
        grey += g;
        changes += x > im.fr.x0 && g != is(at(&im, x - 1, row), nb__plot_grey);
    }
    int pw = im.fr.x1 - im.fr.x0;
    CHECK_MSG(grey > pw / 3 && grey < pw * 5 / 6 && changes >= 20, "%d grey pixels of %d, %d changes", grey, pw, changes);
    free(im.rgb);
    nb_plot_free(p);
}

TEST(plot_text_draws_title_and_axis_labels)
{
    double x[2] = {0, 1}, y[2] = {0, 1};
    nb_plot *p = nb_plot_new(800, 500);
    CHECK(p);
    CHECK_OK(nb_plot_line(p, NULL, x, y, 2));
    img bare, titled;
    CHECK(render(p, 800, 500, &bare));
    CHECK_OK(nb_plot_title(p, "TITLE TEXT"));
    CHECK_OK(nb_plot_labels(p, "steps", "loss"));
    CHECK(render(p, 800, 500, &titled));
    int s = titled.fr.scale;
    CHECK(s == 2); /* 800 x 500 draws its text at twice the font size */
    /* the title: above the plot area, right of the y tick labels */
    int with = count_dark(&titled, titled.fr.x0, 0, 800, titled.fr.y0 - 1);
    CHECK_MSG(with > 200, "title: %d dark pixels", with);
    CHECK(count_dark(&bare, bare.fr.x0, 0, 800, bare.fr.y0 - 1) == 0);
    int band = 5 * s + NB__FONT_H * s; /* padding and a line of text */
    /* x label: below the tick labels, centred under the plot area */
    CHECK(count_dark(&titled, 0, 500 - band, 800, 500) > 100);
    /* y label: along the left edge, taller than wide (turned 90 degrees) */
    int x0 = 800, x1 = -1, y0 = 500, y1 = -1;
    for (int yy = 0; yy < 500; yy++)
        for (int xx = 0; xx < band; xx++)
            if (dark(at(&titled, xx, yy))) {
                if (xx < x0) x0 = xx;
                if (xx > x1) x1 = xx;
                if (yy < y0) y0 = yy;
                if (yy > y1) y1 = yy;
            }
    CHECK_MSG(x1 >= 0 && y1 - y0 > 3 * (x1 - x0), "y label ink %d..%d x %d..%d", x0, x1, y0, y1);
    CHECK(count_dark(&titled, 0, 0, band, 500) > 100);
    free(bare.rgb);
    free(titled.rgb);
    nb_plot_free(p);
}

TEST(plot_legend_goes_where_data_is_not)
{
    double x[2] = {0, 10}, up[2] = {0, 10}, down[2] = {10, 0};
    nb_plot *p = nb_plot_new(600, 400);
    CHECK(p);
    CHECK_OK(nb_plot_line(p, "rising", x, up, 2));
    img im;
    CHECK(render(p, 600, 400, &im));
    int mx = (im.fr.x0 + im.fr.x1) / 2, my = (im.fr.y0 + im.fr.y1) / 2;
    const int *L = im.fr.legend;
    CHECK_MSG(L[2] < mx && L[3] < my, "legend %d,%d..%d,%d: not top left", L[0], L[1], L[2], L[3]);
    CHECK(count_dark(&im, L[0], L[1], L[2], L[3]) > 50); /* its label */
    int sample = 0;
    for (int yy = L[1]; yy < L[3]; yy++)
        for (int xx = L[0]; xx < L[2]; xx++) sample += is(at(&im, xx, yy), nb__plot_palette[0]);
    CHECK(sample > 20);
    free(im.rgb);
    nb_plot_free(p);

    p = nb_plot_new(600, 400);
    CHECK(p);
    CHECK_OK(nb_plot_line(p, "falling", x, down, 2));
    CHECK(render(p, 600, 400, &im));
    CHECK_MSG(L[0] > mx && L[3] < my, "legend %d,%d..%d,%d: not top right", L[0], L[1], L[2], L[3]);
    free(im.rgb);
    nb_plot_free(p);
}

TEST(plot_ranges_from_data)
{
    nb_plot *p = nb_plot_new(400, 300);
    CHECK(p);
    img im;
    CHECK(render(p, 400, 300, &im)); /* no data: [0, 1] */
    CHECK(im.fr.xlo == 0 && im.fr.xhi == 1 && im.fr.ylo == 0 && im.fr.yhi == 1);
    free(im.rgb);
    double x1 = 3, y1 = 7;
    CHECK_OK(nb_plot_line_points(p, "one", &x1, &y1, 1));
    CHECK(render(p, 400, 300, &im));
    CHECK(im.fr.xlo < 3 && im.fr.xhi > 3 && im.fr.ylo < 7 && im.fr.yhi > 7);
    CHECK(count_colour(&im, nb__plot_palette[0]) > 20); /* the point shows */
    free(im.rgb);
    nb_plot_free(p);

    double x[4] = {1, 2, 3, 4}, y[4] = {5, 5, 5, 5};
    p = nb_plot_new(400, 300);
    CHECK(p);
    CHECK_OK(nb_plot_line(p, "flat", x, y, 4));
    CHECK(render(p, 400, 300, &im));
    CHECK(im.fr.ylo < 5 && im.fr.yhi > 5 && im.fr.yhi - im.fr.ylo < 5);
    /* 5% margins */
    CHECK_NEAR(im.fr.xlo, 1 - 0.15, 1e-12, 1e-12);
    CHECK_NEAR(im.fr.xhi, 4 + 0.15, 1e-12, 1e-12);
    free(im.rgb);
    /* a fixed end with all the data beyond it still gives a range */
    CHECK_OK(nb_plot_ylim(p, 10, NAN));
    CHECK(render(p, 400, 300, &im));
    CHECK(im.fr.ylo == 10 && im.fr.yhi > 10);
    free(im.rgb);
    nb_plot_free(p);
}

TEST(plot_far_points_keep_line_direction)
{
    /* Lines towards points far outside the limits are clipped, not bent:
     * towards (1e300, 1e300) from the centre, the line leaves through the
     * top right corner; towards (1e308, 0.5) it runs level to the edge. */
    double x[2] = {0.5, 1e300}, y[2] = {0.5, 1e300}, hx[2] = {0.5, 1e308}, hy[2] = {0.5, 0.5};
    nb_plot *p = nb_plot_new(600, 400);
    CHECK(p);
    CHECK_OK(nb_plot_xlim(p, 0, 1));
    CHECK_OK(nb_plot_ylim(p, 0, 1));
    CHECK_OK(nb_plot_line(p, NULL, x, y, 2));
    CHECK_OK(nb_plot_line(p, NULL, hx, hy, 2));
    img im;
    CHECK(render(p, 600, 400, &im));
    CHECK(colourful(at(&im, im.fr.x1 - 2, im.fr.y0 + 1)));
    CHECK(is(at(&im, im.fr.x1 - 1, (int)floor(nb__plot_map_y(&im.fr, 0.5))), nb__plot_palette[1]));
    free(im.rgb);
    nb_plot_free(p);

    /* huge and tiny data ranges render with finite axes */
    double big[3] = {-1e308, 0, 1e308}, tiny[3] = {1e-300, 2e-300, 3e-300};
    p = nb_plot_new(300, 200);
    CHECK(p);
    CHECK_OK(nb_plot_line(p, "big", big, tiny, 3));
    CHECK(render(p, 300, 200, &im));
    CHECK(isfinite(im.fr.xhi - im.fr.xlo) && im.fr.yhi > im.fr.ylo);
    free(im.rgb);
    nb_plot_free(p);
}

TEST(plot_small_chart_with_long_text)
{
    double x[3] = {1e-7, 2e-7, 3e-7}, y[3] = {123456789, 123456790, 123456791};
    nb_plot *p = nb_plot_new(200, 200);
    CHECK(p);
    CHECK_OK(nb_plot_title(p, "a title much longer than two hundred pixels can hold \x01\xff"));
    CHECK_OK(nb_plot_labels(p, "a long x label that will not fit", "and a long y label too"));
    CHECK_OK(nb_plot_line(p, "a label longer than the plot area itself", x, y, 3));
    img im;
    CHECK(render(p, 200, 200, &im));
    CHECK(im.fr.scale == 1);
    CHECK(im.fr.x1 - im.fr.x0 >= 40 && im.fr.y1 - im.fr.y0 >= 40);
    free(im.rgb);
    nb_plot_free(p);
}

TEST(plot_render_is_deterministic)
{
    double x[50], y[50], lo[50], hi[50];
    for (int i = 0; i < 50; i++) x[i] = i, y[i] = sin(i * 0.3), lo[i] = y[i] - 0.2, hi[i] = y[i] + 0.2;
    nb_plot *p = nb_plot_new(500, 300);
    CHECK(p);
    CHECK_OK(nb_plot_band(p, x, lo, hi, 50));
    CHECK_OK(nb_plot_line_points(p, "sin", x, y, 50));
    CHECK_OK(nb_plot_hline(p, "zero", 0));
    img a, b;
    CHECK(render(p, 500, 300, &a));
    CHECK(render(p, 500, 300, &b));
    CHECK(memcmp(a.rgb, b.rgb, (size_t)500 * 300 * 3) == 0);
    free(a.rgb);
    free(b.rgb);
    nb_plot_free(p);
}

/* ---- ticks and labels ---------------------------------------------------------- */

static void check_ticks(double lo, double hi, int target, const char *const *want, int nwant)
{
    double t[NB__PLOT_MAX_TICKS], step;
    char lab[NB__PLOT_MAX_TICKS][NB__PLOT_LABEL];
    int n = nb__plot_linear_ticks(lo, hi, target, t, NB__PLOT_MAX_TICKS, &step);
    nb__plot_linear_labels(t, n, step, lab);
    if (n != nwant) {
        nbt_fail(__FILE__, __LINE__, "[%g, %g]: %d ticks, expected %d", lo, hi, n, nwant);
        return;
    }
    for (int i = 0; i < n; i++)
        if (strcmp(lab[i], want[i]))
            nbt_fail(__FILE__, __LINE__, "[%g, %g] tick %d: \"%s\", expected \"%s\"", lo, hi, i, lab[i], want[i]);
}

TEST(plot_linear_ticks_and_labels)
{
    check_ticks(0, 1, 5, (const char *[]){"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"}, 6);
    check_ticks(0, 10, 5, (const char *[]){"0", "2", "4", "6", "8", "10"}, 6);
    check_ticks(-3.7, 12.2, 4, (const char *[]){"0", "5", "10"}, 3);
    check_ticks(-0.25, 0.25, 5, (const char *[]){"-0.2", "-0.1", "0.0", "0.1", "0.2"}, 5);
    check_ticks(0, 5e-5, 5, (const char *[]){"0", "1e-05", "2e-05", "3e-05", "4e-05", "5e-05"}, 6);
    check_ticks(0, 3e6, 6, (const char *[]){"0", "5e+05", "1e+06", "1.5e+06", "2e+06", "2.5e+06", "3e+06"}, 7);
    check_ticks(1, 1.0001, 2, (const char *[]){"1.00000", "1.00005", "1.00010"}, 3);
    check_ticks(0.001, 0.0042, 4, (const char *[]){"0.001", "0.002", "0.003", "0.004"}, 4);

    /* Any range: at least two ticks inside it, each label distinct. */
    double ranges[][2] = {{0.1, 0.9},     {0.11, 0.19}, {-1e300, 1e300}, {1e-300, 1.000001e-300},
                          {123456789, 123456791}, {-7, -6.99}, {1e5, 2e6}, {0.3, 0.3000001}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++)
        for (int target = 1; target <= 10; target++) {
            double lo = ranges[r][0], hi = ranges[r][1], t[NB__PLOT_MAX_TICKS], step;
            char lab[NB__PLOT_MAX_TICKS][NB__PLOT_LABEL];
            int n = nb__plot_linear_ticks(lo, hi, target, t, NB__PLOT_MAX_TICKS, &step);
            nb__plot_linear_labels(t, n, step, lab);
            CHECK_MSG(n >= 2 && n <= target + 6, "[%g, %g] target %d: %d ticks", lo, hi, target, n);
            double eps = 1e-6 * (hi - lo);
            for (int i = 0; i < n; i++) {
                CHECK_MSG(t[i] >= lo - eps && t[i] <= hi + eps, "[%g, %g]: tick %g outside", lo, hi, t[i]);
                for (int j = 0; j < i; j++)
                    CHECK_MSG(strcmp(lab[i], lab[j]), "[%g, %g]: label \"%s\" twice", lo, hi, lab[i]);
            }
        }
}

TEST(plot_decade_labels)
{
    struct { int k; const char *want; } cases[] = {{-6, "1e-06"}, {-5, "1e-05"}, {-4, "0.0001"}, {-3, "0.001"},
                                                   {-1, "0.1"},   {0, "1"},      {1, "10"},        {5, "100000"},
                                                   {6, "1e+06"},  {12, "1e+12"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[NB__PLOT_LABEL];
        nb__plot_decade_label(cases[i].k, buf, sizeof buf);
        CHECK_MSG(!strcmp(buf, cases[i].want), "10^%d: \"%s\", expected \"%s\"", cases[i].k, buf, cases[i].want);
    }
}

/* ---- font ---------------------------------------------------------------------- */

TEST(plot_font_glyphs_are_distinct)
{
    for (int c = 32; c <= 126; c++) {
        int ink = 0;
        for (int r = 0; r < NB__FONT_H; r++)
            for (int k = 0; k < NB__FONT_W; k++) ink += nb__font_ink((unsigned char)c, r, k);
        CHECK_MSG(c == ' ' ? ink == 0 : ink > 0, "glyph '%c' has %d ink pixels", c, ink);
        for (int d = 33; d < c; d++) {
            int same = 1;
            for (int r = 0; r < NB__FONT_H && same; r++)
                for (int k = 0; k < NB__FONT_W && same; k++)
                    same = nb__font_ink((unsigned char)c, r, k) == nb__font_ink((unsigned char)d, r, k);
            CHECK_MSG(!same, "glyphs '%c' and '%c' are the same", c, d);
        }
    }
    for (int r = 0; r < NB__FONT_H; r++)
        for (int k = 0; k < NB__FONT_W; k++) {
            CHECK(nb__font_ink(200, r, k) == nb__font_ink('?', r, k));
            CHECK(nb__font_ink('\n', r, k) == nb__font_ink('?', r, k));
        }
    CHECK(!nb__font_ink('A', -1, 0) && !nb__font_ink('A', 0, NB__FONT_W) && !nb__font_ink('A', NB__FONT_H, 0));
}
