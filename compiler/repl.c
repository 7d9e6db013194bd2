/* repl.c — the interactive session: `dcc`, `dcc -i file.dl`.
 *
 * Reads declarations and expressions, one logical input at a time (a line,
 * continued while parse_repl_input says it is incomplete), and commands
 * starting with ':'. Expressions are compiled by the whole pipeline and run
 * with LLVM's ORC LLJIT in this process's child; nothing is interpreted.
 *
 * The session is a chain of modules, kept as parsed in this process and
 * never type-checked here:
 *   - every accepted input that declares something (def, type, import) is a
 *     module of its own, parsed from its text;
 *   - every file loaded (-i, :load) and every module imported at the prompt
 *     is a scope entry too.
 * A new input sees the entries before it through synthetic imports, newest
 * first (the checker searches a module's imports from its last import
 * declaration to its first), so a redefinition shadows the old one while
 * definitions made in between keep referring to the old one, as in an ML
 * toplevel. An entry is imported only while one of its names (values,
 * types, constructors, fields) is still visible.
 *
 * Each input is checked and run in a forked child: the child type-checks
 * the chain plus the input, lowers, simplifies, differentiates and generates
 * code for `export def %eval () : unit = println (e)` (or e itself when it
 * has type unit), hands the bitcode to LLJIT and calls the export's C
 * wrapper, whose error trap turns a run-time error into a message. This
 * process adds a declaration to the chain only when its child succeeded.
 * Because the child owns all the state of an evaluation, an error, a crash
 * or Ctrl-C (SIGINT kills the child; this process waits and returns to the
 * prompt) never ends the session, and nothing leaks from one input to the
 * next.
 *
 * Positions: the text of an input is padded with the newlines and spaces
 * before it in the session, so that diagnostics say `<repl>:LINE:COL` with
 * LINE the line of the session (of the script, when reading a pipe); the
 * child registers the whole transcript as the text of <repl> for the source
 * lines of messages, and shows warnings only about what it works on (the
 * earlier inputs were warned about when they were entered). A run-time
 * error is reported as a diagnostic too, with its source line.
 *
 * Files: a file given to -i or :load is imported by its path; it is read
 * when it is loaded (and by :reload, or :load of it again); a REPL input can
 * import std modules and files as a program does.
 *
 * Terminal: libedit (histedit.h) for line editing, history in
 * ~/.dcc_history. Otherwise (stdin a pipe or a file): no prompt, no banner,
 * lines read with read(2) so that a child's exit never moves the shared
 * offset of standard input under this process's buffer.
 */
#include "dcc.h"

#include <dlfcn.h>
#include <errno.h>
#include <histedit.h>
#include <limits.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"

#define REPL_FILE "<repl>"
#define PROMPT "dl> "
#define PROMPT_MORE "... "

/* ========================================================================
 * session state
 * ======================================================================== */

typedef enum { ENTRY_TEXT, ENTRY_FILE } EntryKind;

/* What :reload replays, in order. */
typedef struct Entry {
    EntryKind kind;
    char *text;       /* ENTRY_TEXT: the input as typed */
    int line, col;    /* ENTRY_TEXT: where it started in the session */
    char *path;       /* ENTRY_FILE: as given to -i / :load */
} Entry;

static struct {
    bool interactive;
    Module *prelude;
    Vec scope;        /* Module *, oldest first */
    Vec entries;      /* Entry * */
    StrBuf transcript;/* every line read, for the source lines of messages */
    int nlines;
    pid_t child;
    volatile sig_atomic_t interrupted;
    volatile sig_atomic_t at_prompt; /* in el_gets: Ctrl-C jumps to prompt_jb */
    sigjmp_buf prompt_jb;
    bool failed;      /* an input failed (a script's exit status) */
    /* what a child works on: warnings elsewhere were shown before */
    int cur_line;     /* <repl> lines from here on */
    const char *cur_file; /* a file being loaded */
    StrBuf diag_line; /* the child's diagnostics filter: the line so far */
    bool diag_keep;
    EditLine *el;
    History *hist;
    char *hist_path;
    bool more;        /* the prompt is the continuation prompt */
    Vec inputs;       /* char *: the parsed inputs' texts, diag's source lines */
} S;

/* ========================================================================
 * modules of the session
 * ======================================================================== */

/* The text of an input placed at line `line`, column `col` of the session:
 * preceded by line-1 newlines and col-1 spaces. */
static char *pad_text(const char *text, int line, int col, size_t *len)
{
    size_t n = strlen(text);
    size_t pre = (size_t)(line > 1 ? line - 1 : 0) + (size_t)(col > 1 ? col - 1 : 0);
    char *s = xmalloc(pre + n + 2);
    size_t k = 0;
    for (int i = 1; i < line; i++)
        s[k++] = '\n';
    for (int i = 1; i < col; i++)
        s[k++] = ' ';
    memcpy(s + k, text, n);
    k += n;
    s[k++] = '\n';
    s[k] = 0;
    *len = k;
    return s;
}

static void add_key(Vec *keys, char ns, const char *name)
{
    if (name)
        vec_push(keys, (void *)intern(arena_printf(dcc_arena, "%c:%s", ns, name)));
}

/* The names a module declares at top level, one key per namespace. */
static void module_keys(Module *m, Vec *keys)
{
    for (int i = 0; i < m->ndecls; i++) {
        Decl *d = m->decls[i];
        switch (d->kind) {
        case DECL_DEF:
        case DECL_EXPORT_DERIV:
            add_key(keys, 'v', d->name);
            break;
        case DECL_TYPE:
            add_key(keys, 't', d->name);
            for (int c = 0; c < d->ncons; c++)
                add_key(keys, 'c', d->cons[c].name);
            if (d->record)
                for (int f = 0; f < d->record->nargs; f++)
                    add_key(keys, 'f', d->record->fields[f]);
            break;
        default:
            break;
        }
    }
}

/* The imports a new module needs: every scope entry (newest last), or only
 * those with a name still visible. */
static Decl **scope_imports(bool all, int *n)
{
    int ns = S.scope.len;
    bool *need = xmalloc((size_t)ns + 1);
    CoreMap seen = {0};
    for (int i = ns - 1; i >= 0; i--) {
        Module *m = S.scope.data[i];
        Vec keys = {0};
        module_keys(m, &keys);
        need[i] = all;
        for (int k = 0; k < keys.len; k++) {
            if (!core_map_get(&seen, keys.data[k])) {
                need[i] = true;
                core_map_put(&seen, keys.data[k], (void *)1);
            }
        }
        vec_free(&keys);
    }
    core_map_free(&seen);
    Decl **ds = NEWN(Decl *, ns + 1);
    int k = 0;
    for (int i = 0; i < ns; i++) {
        if (!need[i])
            continue;
        Module *m = S.scope.data[i];
        Decl *d = decl_new(DECL_IMPORT, loc_none);
        d->path = m->path;
        d->is_std = m->is_std;
        d->imported = m;
        ds[k++] = d;
    }
    free(need);
    *n = k;
    return ds;
}

/* m's declarations become the scope's imports followed by its own (its own
 * imports, last, are searched first). */
static void add_scope_imports(Module *m, bool all)
{
    int n;
    Decl **imp = scope_imports(all, &n);
    Decl **ds = NEWN(Decl *, n + m->ndecls + 1);
    memcpy(ds, imp, sizeof(Decl *) * (size_t)n);
    if (m->ndecls)
        memcpy(ds + n, m->decls, sizeof(Decl *) * (size_t)m->ndecls);
    m->decls = ds;
    m->ndecls += n;
}

/* Every module reachable from m through its imports, imported first. */
static void closure_visit(Module *m, CoreMap *seen, Vec *order)
{
    if (!m || core_map_get(seen, m))
        return;
    core_map_put(seen, m, (void *)1);
    for (int i = 0; i < m->ndecls; i++)
        if (m->decls[i]->kind == DECL_IMPORT)
            closure_visit(m->decls[i]->imported, seen, order);
    vec_push(order, m);
}

static void module_order(Module *root, Vec *order)
{
    CoreMap seen = {0};
    closure_visit(S.prelude, &seen, order);
    closure_visit(root, &seen, order);
    core_map_free(&seen);
}

/* The synthetic root of an evaluation: imports and one definition. */
static Module *root_module(SrcFile *sf, Decl *d)
{
    Module *m = NEW(Module);
    m->name = "repl";
    m->path = REPL_FILE;
    m->file = sf;
    m->decls = NEWN(Decl *, 1);
    m->decls[0] = d;
    m->ndecls = 1;
    m->state = 2;
    add_scope_imports(m, false);
    return m;
}

/* Loads the prelude (once per module cache). */
static bool load_prelude(void)
{
    Vec order = {0};
    module_load_text(REPL_FILE, "", 0, &order);
    S.prelude = order.len ? order.data[0] : NULL;
    vec_free(&order);
    return S.prelude != NULL;
}

/* ========================================================================
 * children: each input is checked and run in a forked process
 * ======================================================================== */

/* Ctrl-C: kills the evaluation (the terminal has sent SIGINT to the child
 * too, but `kill -INT` may not have); at the prompt, abandons the line. */
static void on_sigint(int sig)
{
    (void)sig;
    S.interrupted = 1;
    if (S.child > 0)
        kill(S.child, SIGINT);
    if (S.at_prompt) {
        S.at_prompt = 0;
        siglongjmp(S.prompt_jb, 1);
    }
}

static void set_sigint(void (*h)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: reads return EINTR */
    sigaction(SIGINT, &sa, NULL);
}

/* A child checks the whole session again, so a warning about an earlier
 * input or file would be repeated at every input: the child's diagnostics
 * pass through this filter, which drops warnings (and their notes and source
 * lines) outside what the child works on. A diagnostic starts with a line
 * "FILE:LINE:COL: LEVEL: " or "dcc: LEVEL: " (colour codes aside); the lines
 * after it, indented, belong to it. */
static void diag_filter_line(const char *s, size_t n)
{
    char plain[512];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof plain; i++) {
        if (s[i] == 27) { /* ESC [ ... m */
            while (i < n && s[i] != 'm')
                i++;
            continue;
        }
        plain[k++] = s[i];
    }
    plain[k] = 0;
    if (k && plain[0] != ' ') {
        const char *lv = strstr(plain, ": warning: ");
        const char *er = strstr(plain, ": error: ");
        const char *no = strstr(plain, ": note: ");
        if (er && (!lv || er < lv) && (!no || er < no)) {
            S.diag_keep = true;
        } else if (lv && (!no || lv < no)) {
            /* FILE:LINE:COL before it */
            const char *p = lv;
            while (p > plain && p[-1] >= '0' && p[-1] <= '9')
                p--;
            if (p > plain && p[-1] == ':')
                p--;
            while (p > plain && p[-1] >= '0' && p[-1] <= '9')
                p--;
            int line = atoi(p);
            size_t flen = p > plain ? (size_t)(p - plain - 1) : 0;
            bool repl = flen == strlen(REPL_FILE) && strncmp(plain, REPL_FILE, flen) == 0;
            bool file = S.cur_file && flen == strlen(S.cur_file) && strncmp(plain, S.cur_file, flen) == 0;
            S.diag_keep = (repl && line >= S.cur_line) || file || flen == 0;
        }
        /* a note goes with the diagnostic before it */
    }
    if (S.diag_keep) {
        fflush(stdout);
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(2, s + off, n - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
    }
}

static ssize_t diag_filter_write(void *cookie, const char *buf, size_t n)
{
    (void)cookie;
    for (size_t i = 0; i < n; i++) {
        sb_putc(&S.diag_line, buf[i]);
        if (buf[i] == '\n') {
            diag_filter_line(S.diag_line.data, S.diag_line.len);
            S.diag_line.len = 0;
        }
    }
    return (ssize_t)n;
}

/* The child registers the whole session as the text of <repl>, for the
 * source lines under its messages, and colours them as a terminal would. */
static void child_setup(void)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (dcc_options.colour < 0)
        diag_set_colour(isatty(2) && !getenv("NO_COLOR"));
    static FILE *filter;
    if (!filter) {
        filter = fopencookie(NULL, "w", (cookie_io_functions_t){.write = diag_filter_write});
        if (filter) {
            setvbuf(filter, NULL, _IONBF, 0);
            diag_set_stream(filter);
            S.diag_keep = true;
        }
    }
    diag_add_file(REPL_FILE, REPL_FILE, S.transcript.data ? S.transcript.data : "", S.transcript.len);
}

/* Runs fn(arg) in a child process; returns its exit status, or -1 when it
 * was interrupted (said so) or crashed (said so). */
static int in_child(int (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    S.interrupted = 0;
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "dcc: error: cannot start the evaluation: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        child_setup();
        int st = fn(arg);
        fflush(stdout);
        fflush(stderr);
        _exit(st);
    }
    S.child = pid;
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            st = 0;
            break;
        }
    }
    S.child = 0;
    if (WIFEXITED(st)) {
        if (WEXITSTATUS(st) != 0)
            S.failed = true;
        return WEXITSTATUS(st);
    }
    S.failed = true;
    fflush(stdout);
    if (WIFSIGNALED(st) && (WTERMSIG(st) == SIGINT || S.interrupted)) {
        fprintf(stderr, "interrupted\n");
    } else if (WIFSIGNALED(st)) {
        fprintf(stderr, "dcc: error: the evaluation crashed (%s)\n", strsignal(WTERMSIG(st)));
    }
    S.interrupted = 0;
    return -1;
}

static int check(Module *root)
{
    Vec order = {0};
    module_order(root, &order);
    typecheck_program(&order);
    vec_free(&order);
    return diag_error_count() ? 1 : 0;
}

/* ---- the JIT ---------------------------------------------------------- */

static bool llvm_failed(LLVMErrorRef err, const char *what)
{
    if (!err)
        return false;
    char *m = LLVMGetErrorMessage(err);
    fprintf(stderr, "dcc: error: %s: %s\n", what, m);
    LLVMDisposeErrorMessage(m);
    return true;
}

/* Runs the export `sym` (int sym(void)) of the program with LLJIT; libdlrt
 * is loaded into the process for it. Returns the exit status. */
static int jit_run(CProgram *p, const char *sym)
{
    char *bc;
    size_t len;
    if (!codegen_bitcode(p, &dcc_options, &bc, &len))
        return 1;
    const char *lib = arena_printf(dcc_arena, "%s/libdlrt.so", codegen_runtime_dir());
    void *rt = dlopen(lib, RTLD_NOW | RTLD_GLOBAL);
    if (!rt) {
        fprintf(stderr, "dcc: error: cannot load the runtime library: %s\n", dlerror());
        return 1;
    }
    void (*rt_init)(int, char **) = (void (*)(int, char **))dlsym(rt, "dl_init");
    void (*rt_flush)(void) = (void (*)(void))dlsym(rt, "dl_flush");
    const char *(*rt_error)(void) = (const char *(*)(void))dlsym(rt, "dl_last_error");
    typedef struct { const char *file; int32_t line, col; } SrcLoc; /* dl_srcloc */
    SrcLoc (*rt_error_loc)(void) = (SrcLoc(*)(void))dlsym(rt, "dl_last_error_loc");
    if (!rt_init || !rt_flush || !rt_error || !rt_error_loc) {
        fprintf(stderr, "dcc: error: %s is not the DL runtime library\n", lib);
        return 1;
    }

    LLVMOrcLLJITRef jit;
    if (llvm_failed(LLVMOrcCreateLLJIT(&jit, LLVMOrcCreateLLJITBuilder()), "cannot start the JIT"))
        return 1;
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(jit);
    LLVMOrcDefinitionGeneratorRef gen;
    if (llvm_failed(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                        &gen, LLVMOrcLLJITGetGlobalPrefix(jit), NULL, NULL),
                    "cannot resolve symbols of the process"))
        return 1;
    LLVMOrcJITDylibAddGenerator(jd, gen);

    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMMemoryBufferRef mb = LLVMCreateMemoryBufferWithMemoryRange(bc, len, "repl", 0);
    LLVMModuleRef mod;
    if (LLVMParseBitcodeInContext2(LLVMOrcThreadSafeContextGetContext(tsc), mb, &mod)) {
        fprintf(stderr, "dcc: internal error: cannot read back the generated bitcode\n");
        return 1;
    }
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);
    if (llvm_failed(LLVMOrcLLJITAddLLVMIRModule(jit, jd, tsm), "cannot add the module to the JIT"))
        return 1;
    LLVMOrcExecutorAddress addr = 0;
    if (llvm_failed(LLVMOrcLLJITLookup(jit, &addr, sym), "cannot link the evaluation"))
        return 1;

    static char *argv[] = {"dcc", NULL};
    rt_init(1, argv);
    int (*fn)(void) = (int (*)(void))(uintptr_t)addr;
    int st = fn();
    rt_flush();
    fflush(stdout);
    if (st != 0) {
        /* as a diagnostic: the source line under it when the file is known */
        SrcLoc l = rt_error_loc();
        Loc at = loc_none;
        if (l.file && l.line > 0)
            at = (Loc){l.file, (int)l.line, (int)l.col, (int)l.line, (int)l.col};
        error_at(at, "%s", rt_error());
        return 1;
    }
    /* the JIT is not torn down: the process ends now */
    return 0;
}

/* ---- evaluation of an expression and the commands on one --------------- */

typedef enum { CMD_EVAL, CMD_TYPE, CMD_CORE, CMD_AD } Cmd;

typedef struct EvalJob {
    Cmd cmd;
    Expr *e;
    SrcFile *sf;
} EvalJob;

static TypeExpr *unit_texpr(Loc loc)
{
    TypeExpr *t = texpr_new(TE_NAME, loc);
    t->name = intern("unit");
    return t;
}

/* export def %eval () : unit = println (e) */
static Decl *eval_decl(Expr *e)
{
    Decl *d = decl_new(DECL_DEF, e->loc);
    d->name = intern("%eval");
    d->is_export = true;
    d->params = NEWN(Pat *, 1);
    d->params[0] = pat_new(PAT_UNIT, e->loc);
    d->nparams = 1;
    d->ret = unit_texpr(e->loc);
    Expr *pr = expr_new(EX_VAR, e->loc);
    pr->u.var.name = intern("println");
    Expr *app = expr_new(EX_APP, e->loc);
    app->u.app.fn = pr;
    app->u.app.arg = e;
    d->body = app;
    return d;
}

/* With DCC_VERIFY set (the test suite), the Core IR is checked after each
 * stage, as the driver does. */
static bool verified(CProgram *p, const char *after)
{
    const char *v = getenv("DCC_VERIFY");
    if (v && *v && strcmp(v, "0") != 0 && !core_verify(p)) {
        fprintf(stderr, "dcc: internal error: the Core IR is malformed after %s\n", after);
        return false;
    }
    return true;
}

static int eval_child(void *arg)
{
    EvalJob *j = arg;
    Options *o = &dcc_options;
    if (j->cmd == CMD_TYPE) {
        Decl *d = decl_new(DECL_DEF, j->e->loc);
        d->name = intern("%type");
        d->body = j->e;
        Module *root = root_module(j->sf, d);
        if (check(root))
            return 1;
        printf("%s\n", d->binding ? types_scheme_string(d->binding) : type_to_string(j->e->type));
        return 0;
    }
    Decl *d = eval_decl(j->e);
    Module *root = root_module(j->sf, d);
    if (check(root))
        return 1;
    /* a unit value is not printed */
    Type *t = type_resolve(j->e->type);
    if (t && t->kind == TY_UNIT)
        d->body = j->e;
    Vec order = {0};
    module_order(root, &order);
    CProgram *prog = core_lower_program(&order, root);
    vec_free(&order);
    if (!prog || diag_error_count() || !verified(prog, "lowering"))
        return 1;
    if (j->cmd == CMD_CORE) {
        core_print_program(stdout, prog);
        return 0;
    }
    if (o->opt_level > 0)
        core_simplify(prog, o->opt_level);
    int first_ad_var = core_dl_next_var_id(); /* names of the derivative's variables */
    if (!verified(prog, "the simplifier") || !ad_transform_program(prog) || diag_error_count() ||
        !verified(prog, "the AD stages"))
        return 1;
    if (j->cmd == CMD_AD) { /* the derived program as DL, as --emit=ad prints it */
        core_dl_print_program(stdout, prog, first_ad_var);
        return 0;
    }
    core_simplify(prog, o->opt_level);
    if (diag_error_count() || !verified(prog, "the simplifier"))
        return 1;
    const char *sym = NULL;
    for (int i = 0; i < prog->nfuns; i++)
        if (prog->funs[i]->is_export)
            sym = prog->funs[i]->name;
    if (!sym) {
        fprintf(stderr, "dcc: internal error: the evaluation was not compiled\n");
        return 1;
    }
    return jit_run(prog, sym);
}

/* ---- declarations ------------------------------------------------------ */

/* Modules are parsed (and their imports read and cached) in the child
 * first: this process reads them only after they were found good, so that
 * a file fixed after an error is read again. */
typedef struct DefineJob {
    const char *text;
    int line, col;
} DefineJob;

static Module *text_module(const char *text, int line, int col, int *nsyn);

static int define_child(void *arg)
{
    DefineJob *j = arg;
    int nsyn;
    Module *m = text_module(j->text, j->line, j->col, &nsyn);
    if (!m || check(m))
        return 1;
    for (int i = 0; i < m->ndecls; i++) {
        Decl *d = m->decls[i];
        if (d->kind == DECL_DEF && d->binding)
            printf("def %s : %s\n", d->name, types_scheme_string(d->binding));
    }
    return 0;
}

/* The modules an accepted module brings into scope: what it imports
 * explicitly, then itself. */
static void scope_add(Module *m, int nsynthetic)
{
    for (int i = nsynthetic; i < m->ndecls; i++)
        if (m->decls[i]->kind == DECL_IMPORT && m->decls[i]->imported)
            vec_push(&S.scope, m->decls[i]->imported);
    vec_push(&S.scope, m);
}

/* Parses the text of a declaration input as a module of its own (imports
 * resolved); NULL after errors. *nsyn: the synthetic imports added. */
static Module *text_module(const char *text, int line, int col, int *nsyn)
{
    size_t len;
    char *padded = pad_text(text, line, col, &len);
    Vec order = {0};
    int errs = diag_error_count();
    Module *m = module_load_text(REPL_FILE, padded, len, &order);
    free(padded);
    vec_free(&order);
    if (!m || diag_error_count() > errs) {
        S.failed = true;
        return NULL;
    }
    int before = m->ndecls;
    add_scope_imports(m, false);
    *nsyn = m->ndecls - before;
    return m;
}

static void define(const char *text, int line, int col)
{
    DefineJob j = {text, line, col};
    if (in_child(define_child, &j) != 0)
        return;
    int nsyn;
    Module *m = text_module(text, line, col, &nsyn);
    if (!m)
        return; /* an imported file changed in between: reported */
    scope_add(m, nsyn);
    Entry *en = xmalloc(sizeof *en);
    memset(en, 0, sizeof *en);
    en->kind = ENTRY_TEXT;
    en->text = strdup(text);
    en->line = line;
    en->col = col;
    vec_push(&S.entries, en);
}

/* ---- files: -i, :load, :reload ---------------------------------------- */

static Module *file_module(const char *path)
{
    Vec order = {0};
    int errs = diag_error_count();
    Module *m = module_load_root(path, path, &order);
    vec_free(&order);
    if (!m || diag_error_count() > errs) {
        S.failed = true;
        return NULL;
    }
    return m;
}

/* The check of a file: a module importing the whole scope and the file. */
static int load_child(void *arg)
{
    Module *m = file_module(arg);
    if (!m)
        return 1;
    Decl *d = decl_new(DECL_DEF, loc_none);
    d->name = intern("%load");
    d->body = expr_new(EX_UNIT, loc_none);
    Module *root = root_module(NULL, d);
    Decl *imp = decl_new(DECL_IMPORT, loc_none);
    imp->imported = m;
    imp->path = m->path;
    Decl **ds = NEWN(Decl *, root->ndecls + 2);
    memcpy(ds, root->decls, sizeof(Decl *) * (size_t)root->ndecls);
    ds[root->ndecls] = imp;
    root->decls = ds;
    root->ndecls++;
    return check(root);
}

static void reload(void);

static void load_file(const char *path, bool quiet)
{
    /* loading a file again reads it again: a reload */
    for (int i = 0; i < S.entries.len; i++) {
        Entry *en = S.entries.data[i];
        if (en->kind == ENTRY_FILE && strcmp(en->path, path) == 0) {
            reload();
            return;
        }
    }
    S.cur_line = INT_MAX;
    S.cur_file = path;
    if (in_child(load_child, (void *)path) != 0)
        return;
    Module *m = file_module(path);
    if (!m)
        return; /* it changed in between: reported */
    vec_push(&S.scope, m);
    Entry *en = xmalloc(sizeof *en);
    memset(en, 0, sizeof *en);
    en->kind = ENTRY_FILE;
    en->path = strdup(path);
    vec_push(&S.entries, en);
    if (!quiet && S.interactive)
        printf("loaded %s\n", path);
}

/* The texts of the inputs, once module_reset has made diag forget them. */
static void forget_inputs(void)
{
    for (int i = 0; i < S.inputs.len; i++)
        free(S.inputs.data[i]);
    vec_free(&S.inputs);
}

/* Forgets every module and reads the session again from its entries:
 * files from disk, inputs from their text. false after errors. */
static bool rebuild(void)
{
    module_reset();
    forget_inputs();
    vec_free(&S.scope);
    if (!load_prelude())
        return false;
    for (int i = 0; i < S.entries.len; i++) {
        Entry *en = S.entries.data[i];
        if (en->kind == ENTRY_FILE) {
            Module *m = file_module(en->path);
            if (!m)
                return false;
            vec_push(&S.scope, m);
        } else {
            int nsyn;
            Module *m = text_module(en->text, en->line, en->col, &nsyn);
            if (!m)
                return false;
            scope_add(m, nsyn);
        }
    }
    return true;
}

static int reload_child(void *arg)
{
    (void)arg;
    if (!rebuild())
        return 1;
    child_setup(); /* the module reset forgot <repl> */
    Decl *d = decl_new(DECL_DEF, loc_none);
    d->name = intern("%reload");
    d->body = expr_new(EX_UNIT, loc_none);
    Module *m = NEW(Module);
    m->name = "repl";
    m->path = REPL_FILE;
    m->decls = NEWN(Decl *, 1);
    m->decls[0] = d;
    m->ndecls = 1;
    add_scope_imports(m, true);
    return check(m);
}

static void reload(void)
{
    S.cur_line = INT_MAX;
    S.cur_file = NULL;
    if (in_child(reload_child, NULL) != 0) {
        S.failed = true;
        fprintf(stderr, "dcc: the session was not reloaded; it is as before\n");
        return;
    }
    if (!rebuild()) { /* the files changed again in between */
        fprintf(stderr, "dcc: error: reloading failed; the session is empty now\n");
        for (int i = 0; i < S.entries.len; i++) {
            Entry *en = S.entries.data[i];
            free(en->text);
            free(en->path);
            free(en);
        }
        vec_free(&S.entries);
        module_reset();
        forget_inputs();
        vec_free(&S.scope);
        load_prelude();
        return;
    }
    if (S.interactive)
        printf("reloaded\n");
}

/* ========================================================================
 * input
 * ======================================================================== */

static const char *prompt_fn(EditLine *el)
{
    (void)el;
    return S.more ? PROMPT_MORE : PROMPT;
}

/* Script input: whole lines from fd 0 through a private buffer. */
static char *script_line(void)
{
    static char buf[65536];
    static size_t have, pos;
    static bool eof;
    StrBuf line = {0};
    for (;;) {
        if (pos == have) {
            if (eof)
                break;
            ssize_t n = read(0, buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                eof = true;
                break;
            }
            have = (size_t)n;
            pos = 0;
        }
        char c = buf[pos++];
        if (c == '\n') {
            sb_putc(&line, 0);
            return line.data;
        }
        sb_putc(&line, c);
    }
    if (line.len) {
        sb_putc(&line, 0);
        return line.data;
    }
    sb_free(&line);
    return NULL;
}

typedef enum { READ_LINE, READ_EOF, READ_INTERRUPT } ReadStatus;

/* One line without its newline (malloc'd), or EOF, or Ctrl-C at the prompt. */
static ReadStatus read_line(char **out)
{
    *out = NULL;
    if (!S.interactive) {
        *out = script_line();
        return *out ? READ_LINE : READ_EOF;
    }
    S.interrupted = 0;
    int n = 0;
    const char *s;
    if (sigsetjmp(S.prompt_jb, 1)) {
        /* back to cooked mode, the line forgotten */
        el_reset(S.el);
        S.interrupted = 0;
        fputs("^C\n", stdout);
        fflush(stdout);
        return READ_INTERRUPT;
    }
    S.at_prompt = 1;
    s = el_gets(S.el, &n);
    S.at_prompt = 0;
    if (!s || n <= 0)
        return READ_EOF;
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    char *r = xmalloc(len + 1);
    memcpy(r, s, len);
    r[len] = 0;
    *out = r;
    return READ_LINE;
}

static void history_add(const char *line)
{
    if (!S.hist || !*line)
        return;
    HistEvent ev;
    history(S.hist, &ev, H_ENTER, line);
    if (S.hist_path)
        history(S.hist, &ev, H_SAVE, S.hist_path);
}

static void transcript_add(const char *line)
{
    sb_puts(&S.transcript, line);
    sb_putc(&S.transcript, '\n');
    S.nlines++;
}

/* ========================================================================
 * commands
 * ======================================================================== */

static const char help_text[] =
    "Type a definition (def, type, import) or an expression; an unfinished\n"
    "line continues on the next (prompt ...). Expressions are compiled and run;\n"
    "their value is printed (a unit value is not). A new definition of a name\n"
    "hides the old one; definitions made before keep using the old one.\n"
    "\n"
    "  :type E     the type of the expression E\n"
    "  :core E     the Core IR of the program that evaluates E\n"
    "  :ad E       the program after the AD stages (what --emit=ad prints), for\n"
    "              an expression with derivative forms such as grad f x\n"
    "  :load FILE  load the definitions of FILE.dl (again: as :reload)\n"
    "  :reload     read the loaded files again (and check the session)\n"
    "  :help       this text\n"
    "  :quit       leave (also Ctrl-D on an empty line)\n"
    "\n"
    "Ctrl-C interrupts an evaluation (or discards the line being typed).\n"
    "Commands may be shortened to one letter (:t, :c, :a, :l, :r, :h, :q).\n";

/* Matches ":name" or its one-letter abbreviation; *rest gets the argument. */
static bool command_is(const char *line, const char *name, const char **rest)
{
    const char *p = line + 1;
    size_t n = 0;
    while (p[n] && p[n] != ' ' && p[n] != '\t')
        n++;
    if (!((n == strlen(name) && strncmp(p, name, n) == 0) || (n == 1 && p[0] == name[0])))
        return false;
    p += n;
    while (*p == ' ' || *p == '\t')
        p++;
    *rest = p;
    return true;
}

/* ========================================================================
 * the loop
 * ======================================================================== */

typedef struct Pending {
    bool active;
    Cmd cmd;
    StrBuf text;
    int line, col;
} Pending;

/* Parses the pending input; evaluates or defines it when complete. Returns
 * false while it is incomplete. */
static bool process(Pending *pd, bool at_eof)
{
    size_t len;
    char *padded = pad_text(pd->text.data ? pd->text.data : "", pd->line, pd->col, &len);
    vec_push(&S.inputs, padded);
    SrcFile *sf = diag_add_file(REPL_FILE, REPL_FILE, padded, len);
    Decl **decls;
    int ndecls;
    Expr *e;
    bool incomplete;
    bool ok = parse_repl_input(sf, &decls, &ndecls, &e, &incomplete);
    if (incomplete && !at_eof)
        return false;
    if (incomplete) {
        /* the end of a script inside a construct: after its last line */
        const char *last = strrchr(pd->text.data, '\n');
        int col = (int)strlen(last ? last + 1 : pd->text.data) + (last ? 1 : pd->col);
        Loc l = {REPL_FILE, S.nlines, col, S.nlines, col};
        error_at(l, "unexpected end of input: this input is not finished");
        S.failed = true;
        return true;
    }
    if (!ok) {
        S.failed = true;
        return true;
    }
    if (pd->cmd != CMD_EVAL && !e) {
        S.failed = true;
        if (ndecls)
            fprintf(stderr, "dcc: error: :%s takes an expression, not a declaration\n",
                    pd->cmd == CMD_TYPE ? "type" : pd->cmd == CMD_CORE ? "core" : "ad");
        else
            fprintf(stderr, "dcc: error: :%s needs an expression\n",
                    pd->cmd == CMD_TYPE ? "type" : pd->cmd == CMD_CORE ? "core" : "ad");
        return true;
    }
    S.cur_line = pd->line;
    S.cur_file = NULL;
    if (e) {
        EvalJob j = {pd->cmd, e, sf};
        in_child(eval_child, &j);
    } else if (ndecls) {
        define(pd->text.data, pd->line, pd->col);
    }
    return true;
}

static void pending_start(Pending *pd, Cmd cmd, const char *text, int line, int col)
{
    pd->active = true;
    pd->cmd = cmd;
    pd->text.len = 0;
    sb_puts(&pd->text, text);
    pd->line = line;
    pd->col = col;
}

static void pending_finish(Pending *pd, bool at_eof)
{
    if (process(pd, at_eof)) {
        pd->active = false;
        sb_free(&pd->text);
    }
}

/* A command line; false for :quit. */
static bool command(Pending *pd, const char *line, int lineno)
{
    const char *rest;
    int col = (int)(strchr(line, ':') - line) + 1;
    const char *cmdline = line + col - 1;
    static const struct {
        const char *name;
        Cmd cmd;
    } expr_cmds[] = {{"type", CMD_TYPE}, {"core", CMD_CORE}, {"ad", CMD_AD}};
    for (size_t i = 0; i < sizeof expr_cmds / sizeof *expr_cmds; i++) {
        if (command_is(cmdline, expr_cmds[i].name, &rest)) {
            pending_start(pd, expr_cmds[i].cmd, rest, lineno, (int)(rest - line) + 1);
            pending_finish(pd, false);
            return true;
        }
    }
    if (command_is(cmdline, "quit", &rest))
        return false;
    if (command_is(cmdline, "help", &rest)) {
        fputs(help_text, stdout);
    } else if (command_is(cmdline, "load", &rest)) {
        if (!*rest) {
            S.failed = true;
            fprintf(stderr, "dcc: error: :load needs a file name\n");
            return true;
        }
        char *path = strdup(rest);
        size_t n = strlen(path);
        while (n && (path[n - 1] == ' ' || path[n - 1] == '\t'))
            path[--n] = 0;
        if (n >= 2 && path[0] == '"' && path[n - 1] == '"') {
            memmove(path, path + 1, n - 2);
            path[n - 2] = 0;
        }
        load_file(path, false);
        free(path);
    } else if (command_is(cmdline, "reload", &rest)) {
        reload();
    } else {
        size_t n = strcspn(cmdline, " \t");
        S.failed = true;
        fprintf(stderr, "dcc: error: unknown command '%.*s' (:help lists them)\n", (int)n, cmdline);
    }
    return true;
}

static void interactive_setup(void)
{
    S.el = el_init("dcc", stdin, stdout, stderr);
    el_set(S.el, EL_PROMPT, prompt_fn);
    el_set(S.el, EL_EDITOR, "emacs");
    S.hist = history_init();
    HistEvent ev;
    history(S.hist, &ev, H_SETSIZE, 1000);
    history(S.hist, &ev, H_SETUNIQUE, 1);
    el_set(S.el, EL_HIST, history, S.hist);
    el_source(S.el, NULL); /* ~/.editrc */
    const char *home = getenv("HOME");
    if (home && *home) {
        S.hist_path = xmalloc(strlen(home) + 20);
        sprintf(S.hist_path, "%s/.dcc_history", home);
        history(S.hist, &ev, H_LOAD, S.hist_path);
    }
}

static void interactive_end(void)
{
    if (S.hist)
        history_end(S.hist);
    if (S.el)
        el_end(S.el);
    free(S.hist_path);
}

int repl_main(const char *load)
{
    S.interactive = isatty(0);
    set_sigint(on_sigint);
    signal(SIGPIPE, SIG_IGN);
    if (!load_prelude())
        return 1;
    if (S.interactive) {
        interactive_setup();
        printf("dcc %s, the DL compiler: interactive session. :help for help, :quit or Ctrl-D to leave.\n",
               PACKAGE_VERSION);
        fflush(stdout);
    }
    if (load)
        load_file(load, true);

    Pending pd = {0};
    for (;;) {
        diag_reset();
        S.more = pd.active;
        char *line;
        ReadStatus rs = read_line(&line);
        if (rs == READ_INTERRUPT) {
            if (pd.active) {
                pd.active = false;
                sb_free(&pd.text);
            }
            continue;
        }
        if (rs == READ_EOF) {
            if (S.interactive) {
                fputc('\n', stdout);
                fflush(stdout);
            }
            if (pd.active)
                pending_finish(&pd, true);
            break;
        }
        transcript_add(line);
        if (S.interactive)
            history_add(line);
        int lineno = S.nlines;
        if (pd.active) {
            sb_putc(&pd.text, '\n');
            sb_puts(&pd.text, line);
            pending_finish(&pd, false);
            free(line);
            continue;
        }
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p) {
            free(line);
            continue;
        }
        if (*p == ':') {
            bool go_on = command(&pd, line, lineno);
            free(line);
            if (!go_on)
                break;
            continue;
        }
        pending_start(&pd, CMD_EVAL, line, lineno, 1);
        pending_finish(&pd, false);
        free(line);
    }
    if (S.interactive)
        interactive_end();
    fflush(stdout);
    /* a script tells whether all its inputs succeeded */
    return !S.interactive && S.failed ? 1 : 0;
}
