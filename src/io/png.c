/* PNG files, gray and RGB (libpng's simplified API, no setjmp here), and image grids. */
#include "../core/internal.h"
#include "nabla/image.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define NB__PNG_MAX_SIDE 65535
#define NB__PNG_MAX_READ 16384

/* Write a w x h PNG of libpng `format` (one byte per channel) atomically: a
 * temporary file beside `path`, fsync, rename, so readers see either the
 * old file or the whole new one. */
static nb_status write_atomic(const char *path, int w, int h, png_uint_32 format, const uint8_t *pixels)
{
    if (!path || !*path || !pixels) return nb__fail(NB_ERR_ARG, "png write: NULL path or pixels");
    if (w < 1 || h < 1 || w > NB__PNG_MAX_SIDE || h > NB__PNG_MAX_SIDE)
        return nb__fail(NB_ERR_ARG, "png write: size %dx%d outside 1..%d", w, h, NB__PNG_MAX_SIDE);
    size_t plen = strlen(path);
    char *tmp = NB_MALLOC(plen + 16);
    if (!tmp) return nb__fail(NB_ERR_NOMEM, "png write: out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        nb_status s = nb__fail(NB_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        NB_FREE(tmp);
        return s;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        nb_status s = nb__fail(NB_ERR_IO, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        NB_FREE(tmp);
        return s;
    }
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = format;
    nb_status s = NB_OK;
    png_int_32 stride = (png_int_32)(PNG_IMAGE_PIXEL_CHANNELS(format) * (png_uint_32)w);
    if (!png_image_write_to_stdio(&img, f, 0, pixels, stride, NULL))
        s = nb__fail(NB_ERR_IO, "%s: libpng: %s", path, img.message);
    png_image_free(&img);
    if (!s && fflush(f) != 0) s = nb__fail(NB_ERR_IO, "%s: write: %s", path, strerror(errno));
    if (!s && fsync(fileno(f)) != 0) s = nb__fail(NB_ERR_IO, "%s: fsync: %s", path, strerror(errno));
    if (!s) fchmod(fileno(f), 0644);
    if (fclose(f) != 0 && !s) s = nb__fail(NB_ERR_IO, "%s: close: %s", path, strerror(errno));
    if (!s && rename(tmp, path) != 0) s = nb__fail(NB_ERR_IO, "%s: rename: %s", path, strerror(errno));
    if (s) unlink(tmp);
    NB_FREE(tmp);
    return s;
}

nb_status nb_png_write_gray(const char *path, int w, int h, const uint8_t *pixels)
{
    return write_atomic(path, w, h, PNG_FORMAT_GRAY, pixels);
}

nb_status nb_png_write_rgb(const char *path, int w, int h, const uint8_t *rgb)
{
    return write_atomic(path, w, h, PNG_FORMAT_RGB, rgb);
}

nb_status nb_png_read_gray(const char *path, int *w, int *h, uint8_t **pixels)
{
    if (!path || !w || !h || !pixels) return nb__fail(NB_ERR_ARG, "png read: NULL argument");
    *pixels = NULL;
    *w = *h = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return nb__fail(errno == ENOENT ? NB_ERR_NOTFOUND : NB_ERR_IO, "%s: %s", path, strerror(errno));
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_stdio(&img, f)) {
        nb_status s = nb__fail(NB_ERR_FORMAT, "%s: not a readable PNG: %s", path, img.message);
        png_image_free(&img);
        fclose(f);
        return s;
    }
    if (img.width < 1 || img.height < 1 || img.width > NB__PNG_MAX_READ || img.height > NB__PNG_MAX_READ) {
        nb_status s = nb__fail(NB_ERR_FORMAT, "%s: PNG of %ux%u pixels (at most %d on a side)", path,
                               (unsigned)img.width, (unsigned)img.height, NB__PNG_MAX_READ);
        png_image_free(&img);
        fclose(f);
        return s;
    }
    img.format = PNG_FORMAT_GRAY;
    size_t n = (size_t)img.width * img.height;
    uint8_t *buf = NB_MALLOC(n);
    if (!buf) {
        png_image_free(&img);
        fclose(f);
        return nb__fail(NB_ERR_NOMEM, "%s: out of memory for %zu pixels", path, n);
    }
    png_color black = {0, 0, 0};
    if (!png_image_finish_read(&img, &black, buf, (png_int_32)img.width, NULL)) {
        nb_status s = nb__fail(NB_ERR_FORMAT, "%s: corrupt PNG: %s", path, img.message);
        png_image_free(&img);
        NB_FREE(buf);
        fclose(f);
        return s;
    }
    fclose(f);
    *w = (int)img.width;
    *h = (int)img.height;
    *pixels = buf;
    return NB_OK;
}

nb_status nb_image_grid_size(int n, int ih, int iw, int cols, int scale, int pad, int *w, int *h)
{
    if (!w || !h) return nb__fail(NB_ERR_ARG, "image grid: NULL size");
    *w = *h = 0;
    if (n < 1 || ih < 1 || iw < 1 || cols < 1 || scale < 1 || pad < 0)
        return nb__fail(NB_ERR_ARG, "image grid: n=%d, %dx%d tiles, %d columns, scale %d, pad %d: sizes must be positive",
                        n, ih, iw, cols, scale, pad);
    int64_t c = cols < n ? cols : n, rows = (n + c - 1) / c;
    int64_t gw = c * ((int64_t)iw * scale + pad) + pad, gh = rows * ((int64_t)ih * scale + pad) + pad;
    if (gw > NB__PNG_MAX_SIDE || gh > NB__PNG_MAX_SIDE)
        return nb__fail(NB_ERR_ARG, "image grid: %lldx%lld pixels is larger than %d on a side", (long long)gw,
                        (long long)gh, NB__PNG_MAX_SIDE);
    *w = (int)gw;
    *h = (int)gh;
    return NB_OK;
}

static uint8_t to_byte(float v)
{
    if (!(v > 0.0f)) return 0; /* NaN too */
    if (v >= 1.0f) return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

nb_status nb_image_grid(const float *images, int n, int ih, int iw, int cols, int scale, int pad,
                        uint8_t background, uint8_t *out)
{
    int gw, gh;
    nb_status s = nb_image_grid_size(n, ih, iw, cols, scale, pad, &gw, &gh);
    if (s) return s;
    if (!images || !out) return nb__fail(NB_ERR_ARG, "image grid: NULL images or output");
    if (cols > n) cols = n;
    memset(out, background, (size_t)gw * (size_t)gh);
    for (int k = 0; k < n; k++) {
        const float *img = images + (size_t)k * (size_t)ih * (size_t)iw;
        size_t x0 = (size_t)pad + (size_t)(k % cols) * (size_t)(iw * scale + pad);
        size_t y0 = (size_t)pad + (size_t)(k / cols) * (size_t)(ih * scale + pad);
        for (int y = 0; y < ih * scale; y++) {
            uint8_t *row = out + (y0 + (size_t)y) * (size_t)gw + x0;
            const float *src = img + (size_t)(y / scale) * (size_t)iw;
            for (int x = 0; x < iw * scale; x++) row[x] = to_byte(src[x / scale]);
        }
    }
    return NB_OK;
}
