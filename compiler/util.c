/* util.c — arenas, growable vectors, interned names, string buffers.
 *
 * Every compiler structure is allocated from the arena of its compilation
 * and released at once (c3c ARENA_DEF, cproc's allocation discipline). */
#include "dcc.h"

#include <stdlib.h>
#include <string.h>

struct ArenaChunk {
    ArenaChunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

static Arena default_arena;
Arena *dcc_arena = &default_arena;

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        fatal("out of memory (%zu bytes)", n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        fatal("out of memory (%zu bytes)", n);
    return p;
}

void *arena_alloc(Arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    ArenaChunk *c = a->head;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        c = xmalloc(sizeof *c + cap);
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *arena_strdup(Arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *arena_printf(Arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *d = arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(d, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return d;
}

void arena_free(Arena *a)
{
    ArenaChunk *c = a->head;
    while (c) {
        ArenaChunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---- vectors ---- */

void vec_push(Vec *v, void *p)
{
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 8;
        v->data = xrealloc(v->data, sizeof(void *) * (size_t)v->cap);
    }
    v->data[v->len++] = p;
}

void *vec_pop(Vec *v)
{
    return v->len ? v->data[--v->len] : NULL;
}

void vec_free(Vec *v)
{
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

void **vec_freeze(Vec *v)
{
    void **d = NEWN(void *, v->len ? v->len : 1);
    if (v->len)
        memcpy(d, v->data, sizeof(void *) * (size_t)v->len);
    vec_free(v);
    return d;
}

/* ---- interned names: open-addressing hash table, never freed ---- */

static struct {
    const char **slots;
    size_t cap, count;
} names;
static Arena name_arena;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

const char *intern_n(const char *s, size_t n)
{
    if (names.count * 2 >= names.cap) {
        size_t cap = names.cap ? names.cap * 2 : 1024;
        const char **slots = calloc(cap, sizeof *slots);
        if (!slots)
            fatal("out of memory");
        for (size_t i = 0; i < names.cap; i++) {
            const char *k = names.slots[i];
            if (!k)
                continue;
            size_t j = hash_bytes(k, strlen(k)) & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = k;
        }
        free(names.slots);
        names.slots = slots;
        names.cap = cap;
    }
    size_t j = hash_bytes(s, n) & (names.cap - 1);
    while (names.slots[j]) {
        const char *k = names.slots[j];
        if (strncmp(k, s, n) == 0 && k[n] == 0)
            return k;
        j = (j + 1) & (names.cap - 1);
    }
    const char *k = arena_strndup(&name_arena, s, n);
    names.slots[j] = k;
    names.count++;
    return k;
}

const char *intern(const char *s)
{
    return intern_n(s, strlen(s));
}

/* ---- string buffers ---- */

static void sb_reserve(StrBuf *b, size_t extra)
{
    if (b->len + extra + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + extra + 1)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
}

void sb_putc(StrBuf *b, char c)
{
    sb_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = 0;
}

void sb_puts(StrBuf *b, const char *s)
{
    size_t n = strlen(s);
    sb_reserve(b, n);
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
}

void sb_printf(StrBuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_free(StrBuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
