/* nabla/image.h — grayscale PNG files and image grids (for looking at data
 * and predictions). PNG through libpng's simplified API. */
#ifndef NABLA_IMAGE_H
#define NABLA_IMAGE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Write w x h 8-bit gray pixels (row-major, w*h bytes) as a PNG. Atomic: a
 * temporary file in the same directory, fsync, rename, so `path` is either
 * the old file or the complete new one. w, h in [1, 65535].
 * Errors: NB_ERR_ARG (bad size, NULL), NB_ERR_IO (with the errno text). */
nb_status nb_png_write_gray(const char *path, int w, int h, const uint8_t *pixels);

/* Read a PNG of any colour type as 8-bit gray (colour is converted, alpha
 * composed on black). *pixels is malloc'd (w*h bytes); the caller frees it
 * with free(). Errors: NB_ERR_NOTFOUND (no file), NB_ERR_FORMAT (not a PNG,
 * corrupt, larger than 16384 x 16384), NB_ERR_NOMEM. */
nb_status nb_png_read_gray(const char *path, int *w, int *h, uint8_t **pixels);

/* The size of a grid of n tiles of ih x iw pixels in `cols` columns, each
 * pixel scaled up `scale` times, with `pad` pixels of border around and
 * between the tiles. NB_ERR_ARG when a size is not positive (pad may be 0)
 * or the grid is larger than 65535 on a side. */
nb_status nb_image_grid_size(int n, int ih, int iw, int cols, int scale, int pad, int *w, int *h);

/* Tile n images (n x ih x iw floats, each in [0,1]; values outside are
 * clamped, NaN is 0) into out, which holds the w*h bytes that
 * nb_image_grid_size gives. Pixel v becomes round(255 v); the border and the
 * empty cells of the last row are `background` (0..255). */
nb_status nb_image_grid(const float *images, int n, int ih, int iw, int cols, int scale, int pad,
                        uint8_t background, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
