/* module.c — reading source files and resolving imports.
 *
 *   import std/nn        stdlib/nn.dl in the standard library directory
 *   import "lib/x.dl"    relative to the importing file
 *
 * The prelude (std/prelude) is loaded before everything else. Modules are
 * loaded once each (by resolved path); the result is every module in
 * dependency order, the root last. Cycles and missing files are errors at
 * the import's position. */
#include "dcc.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DCC_PKGDATADIR
#define DCC_PKGDATADIR "/usr/local/share/dcc"
#endif
#ifndef DCC_BUILDDIR
#define DCC_BUILDDIR "."
#endif
#ifndef DCC_SRCDIR
#define DCC_SRCDIR "."
#endif

static const char *stdlib_dir;
static Vec loaded; /* every Module read in this compilation */

void module_set_stdlib_dir(const char *dir) { stdlib_dir = dir; }

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* $DCC_STDLIB; else <dir of the dcc binary>/../../stdlib when dcc runs from
 * the build tree; else the configured source tree; else pkgdatadir/std. */
const char *module_stdlib_dir(void)
{
    if (stdlib_dir)
        return stdlib_dir;
    const char *env = getenv("DCC_STDLIB");
    if (env && *env)
        return stdlib_dir = env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            /* installed: <prefix>/bin/dcc → <prefix>/share/dcc/std */
            char *cand = arena_printf(dcc_arena, "%s/../share/dcc/std", exe);
            if (is_file(arena_printf(dcc_arena, "%s/prelude.dl", cand)) &&
                strcmp(exe, DCC_BUILDDIR "/compiler") != 0)
                return stdlib_dir = intern(cand); /* outlives the arena */
        }
    }
    const char *src = DCC_SRCDIR "/stdlib";
    if (is_dir(src))
        return stdlib_dir = src;
    return stdlib_dir = DCC_PKGDATADIR "/std";
}

/* Reads a whole file (or stdin for "-"); NULL with errno set on failure. */
static char *read_all(const char *path, size_t *len)
{
    if (strcmp(path, "-") != 0 && is_dir(path)) {
        errno = EISDIR;
        return NULL;
    }
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (err) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    /* a UTF-8 byte-order mark (some Windows editors write one) is not part
     * of the text: columns start after it, as in the editor */
    if (n >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
        (unsigned char)buf[2] == 0xBF) {
        memmove(buf, buf + 3, n - 3);
        n -= 3;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static const char *module_name_of(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".dl") == 0)
        n -= 3;
    char *name = arena_strndup(dcc_arena, base, n);
    for (char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            *p = '_';
    return intern(name);
}

static Module *find_loaded(const char *key)
{
    for (int i = 0; i < loaded.len; i++) {
        Module *m = loaded.data[i];
        if (strcmp(m->path, key) == 0)
            return m;
    }
    return NULL;
}

static char *canonical(const char *path)
{
    char buf[PATH_MAX];
    if (strcmp(path, "-") != 0 && realpath(path, buf))
        return arena_strdup(dcc_arena, buf);
    return arena_strdup(dcc_arena, path);
}

static Module *parse_text(const char *display, const char *key, char *text, size_t len)
{
    SrcFile *f = diag_add_file(display, key, text, len);
    Module *m = parse_file(f);
    if (!m) {
        m = NEW(Module);
        m->decls = NULL;
    }
    m->name = module_name_of(display);
    m->path = key;
    m->file = f;
    vec_push(&loaded, m);
    return m;
}

static void load_imports(Module *m, Vec *order);

static Module *load_path(const char *path, const char *display, Loc from, bool is_std, Vec *order)
{
    const char *key = canonical(path);
    Module *m = find_loaded(key);
    if (m) {
        if (m->state == 1) {
            error_at(from, "import cycle: '%s' imports itself through this import", display);
            return NULL;
        }
        return m;
    }
    size_t len;
    char *text = read_all(path, &len);
    if (!text) {
        if (from.line)
            error_at(from, "cannot open module '%s': %s", display, strerror(errno));
        else
            error_at(loc_none, "cannot open '%s': %s", display, strerror(errno));
        return NULL;
    }
    m = parse_text(display, key, text, len);
    m->is_std = is_std;
    m->state = 1;
    load_imports(m, order);
    m->state = 2;
    vec_push(order, m);
    return m;
}

static void load_imports(Module *m, Vec *order)
{
    for (int i = 0; i < m->ndecls; i++) {
        Decl *d = m->decls[i];
        if (d->kind != DECL_IMPORT)
            continue;
        const char *path, *display;
        if (d->is_std) {
            const char *rest = d->path;
            if (strncmp(rest, "std/", 4) == 0)
                rest += 4;
            path = arena_printf(dcc_arena, "%s/%s.dl", module_stdlib_dir(), rest);
            display = arena_printf(dcc_arena, "std/%s", rest);
            if (!is_file(path)) {
                error_at(d->loc, "no standard module '%s'", display);
                note_at(loc_none, "looked for %s", path);
                continue;
            }
        } else {
            const char *base = m->path;
            const char *slash = strrchr(base, '/');
            if (d->path[0] == '/' || !slash)
                path = d->path;
            else
                path = arena_printf(dcc_arena, "%.*s/%s", (int)(slash - base), base, d->path);
            /* shown as the importing file's name shows it: a/b.dl imports
             * "c.dl" as a/c.dl */
            const char *shown = m->file ? m->file->name : "";
            const char *dslash = strrchr(shown, '/');
            if (d->path[0] == '/' || !dslash)
                display = d->path;
            else
                display = arena_printf(dcc_arena, "%.*s/%s", (int)(dslash - shown), shown, d->path);
            if (!is_file(path)) {
                error_at(d->loc, "cannot find module \"%s\"", d->path);
                note_at(loc_none, "looked for %s (imports are relative to the importing file)", path);
                continue;
            }
        }
        d->imported = load_path(path, display, d->loc, d->is_std, order);
    }
}

static void load_prelude(Vec *order)
{
    const char *path = arena_printf(dcc_arena, "%s/prelude.dl", module_stdlib_dir());
    if (!is_file(path))
        fatal("the standard library is missing: no %s (set DCC_STDLIB to the stdlib directory)", path);
    load_path(path, "std/prelude", loc_none, true, order);
}

Module *module_load_root(const char *path, const char *display_name, Vec *order)
{
    load_prelude(order);
    return load_path(path, display_name ? display_name : path, loc_none, false, order);
}

Module *module_load_text(const char *name, const char *text, size_t len, Vec *order)
{
    load_prelude(order);
    char *copy = xmalloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = 0;
    Module *m = parse_text(name, name, copy, len);
    m->state = 1;
    load_imports(m, order);
    m->state = 2;
    vec_push(order, m);
    return m;
}

void module_reset(void)
{
    for (int i = 0; i < loaded.len; i++) {
        Module *m = loaded.data[i];
        free((char *)m->file->text);
    }
    vec_free(&loaded);
    diag_forget_files();
    typecheck_reset();
}
