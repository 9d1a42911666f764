/* Thread-local error messages and status names. */
#include "internal.h"
#include <stdio.h>

static _Thread_local char nb__msg[512];

const char *nb_last_error(void) { return nb__msg; }
void nb_clear_error(void) { nb__msg[0] = 0; }

nb_status nb__fail(nb_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nb__msg, sizeof nb__msg, fmt, ap);
    va_end(ap);
    return s;
}

const char *nb_status_str(nb_status s)
{
    switch (s) {
    case NB_OK: return "ok";
    case NB_ERR_ARG: return "invalid argument";
    case NB_ERR_SHAPE: return "shape error";
    case NB_ERR_NOMEM: return "out of memory";
    case NB_ERR_IO: return "i/o error";
    case NB_ERR_FORMAT: return "bad file format";
    case NB_ERR_NOTFOUND: return "not found";
    case NB_ERR_NONFINITE: return "non-finite value";
    case NB_ERR_STATE: return "invalid state";
    case NB_ERR_TIMEOUT: return "timed out";
    }
    return "unknown status";
}
