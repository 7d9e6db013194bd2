/* internal.h — libdlrt internals shared between its files; not installed.
 * Everything here has hidden visibility (the library is built with
 * -fvisibility=hidden) and the prefix dlrt_, so a static link cannot clash
 * with a user's names. One section per .c file. */
#ifndef DLRT_INTERNAL_H
#define DLRT_INTERNAL_H

#include "dlrt.h"

#include <locale.h>
#include <stdarg.h>

#define DLRT_ALIGN 64
/* Header block before the data of every array: sizeof(dl_array) rounded up
 * to the alignment, so that data = (char *)a + DLRT_HEADER is aligned. */
#define DLRT_HEADER ((sizeof(dl_array) + DLRT_ALIGN - 1) / DLRT_ALIGN * DLRT_ALIGN)

/* ------------------------------------------------------------------ array.c */

/* 64-byte aligned blocks from the allocation hook; raise on out of memory. */
void *dlrt_alloc(size_t n);
void *dlrt_realloc(void *p, size_t n);   /* p may be NULL */
void dlrt_free(void *p);                 /* p may be NULL */
char *dlrt_strdup(const char *s);        /* s may be NULL: gives NULL */
/* Product of the shape; checks rank, negative dimensions and overflow of
 * size * elem_size, raising an error naming the shape. */
int64_t dlrt_checked_size(int32_t rank, const int64_t *shape, int64_t elem_size,
                          const dl_srcloc *loc);

/* ------------------------------------------------------------------ error.c */

/* Formats the thread's error message without raising. */
void dlrt_error_set(const char *fmt, ...) DL_PRINTF(1, 2);
void dlrt_error_setv(const char *fmt, va_list ap);
/* Raises the message already set, with position loc (NULL keeps none). */
DL_NORETURN void dlrt_error_raise(const dl_srcloc *loc);
/* The "C" locale, for locale-independent number parsing and printing. */
locale_t dlrt_c_locale(void);

/* ------------------------------------------------------------------ print.c */

/* The stream of the print functions (stdout unless set). */
FILE *dlrt_output(void);

#endif /* DLRT_INTERNAL_H */
