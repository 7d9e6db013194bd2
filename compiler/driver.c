/* driver.c — the dcc command: options, the pipeline, exit status.
 *
 *   dcc [options] file.dl          compile to an executable (a.out or -o)
 *   dcc run file.dl [args...]      compile and run
 *   dcc -c m.dl [--header m.h]     object file (and C header) for C programs
 *   dcc [-i file.dl]               interactive session (REPL, repl.c); with
 *                                  stdin not a terminal, a script session
 *   dcc [options] -                compile the program read from stdin
 *
 * Exit status: 0 on success, 1 when any error was reported, 2 on a usage
 * error. */
#include "dcc.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include "config.h"
#include <llvm/Config/llvm-config.h>

Options dcc_options = {.opt_level = 2, .colour = -1};

/* -i FILE: the REPL, with FILE loaded first. */
static const char *repl_load;
static bool repl_wanted;
/* An option that only makes sense for a compilation was given. */
static bool compile_option;

static const char usage_text[] =
    "usage: dcc [options] FILE.dl            compile FILE.dl to an executable\n"
    "       dcc run [options] FILE.dl [ARGS] compile and run, passing ARGS\n"
    "       dcc -c FILE.dl [--header FILE.h]  compile to an object file for C\n"
    "       dcc [-i FILE.dl]                 interactive session (REPL)\n"
    "\n"
    "Input is a DL source file, or '-' for a program read from standard input.\n"
    "Without an input file dcc starts the REPL; when standard input is not a\n"
    "terminal the REPL reads its lines from it as a script (no prompt, no\n"
    "banner), e.g. echo '1 + 2' | dcc. Type :help in the REPL for its commands.\n"
    "\n"
    "options:\n"
    "  -o FILE           write the output to FILE (default a.out, or FILE.o with -c)\n"
    "  -c                compile only: write an object file\n"
    "  -S                write assembly\n"
    "  --header FILE     with -c: write the C header for the exported functions\n"
    "  -O0 -O1 -O2 -O3   optimisation level (default -O2)\n"
    "  -g                emit debug information (DWARF line tables)\n"
    "  --emit=STAGE      stop after STAGE and print it: tokens, ast, types,\n"
    "                    core, ad (the program after differentiation, as DL),\n"
    "                    llvm, asm; obj writes FILE.o; ptx writes the GPU\n"
    "                    kernels (PTX for sm_80)\n"
    "  --checkpoint=K    reverse mode: save loop state in K segments and recompute\n"
    "                    inside them (K = sqrt: sqrt(n) segments; 0: save all)\n"
    "  --target=nvptx    array loops as PTX kernels run through libdlrt (with -c:\n"
    "                    an object for C programs); host, the default: CPU only\n"
    "  --gpu             run the array loops on an NVIDIA GPU when one is present,\n"
    "                    on the CPU otherwise (docs/gpu.md)\n"
    "  --color=WHEN      colour diagnostics: auto (default), always, never\n"
    "  --stdlib=DIR      the standard library directory (default: built in)\n"
    "  -i FILE           load FILE, then start the REPL\n"
    "  -h, --help        show this help and exit\n"
    "  --version         show the version and the configuration, and exit\n"
    "\n"
    "Diagnostics are written as FILE:LINE:COL: error: MESSAGE. See dcc(1) and\n"
    "docs/language.md for the language.\n";

static _Noreturn void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "dcc: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\ndcc: try 'dcc --help' for the list of options\n");
    exit(2);
}

static const struct {
    const char *name;
    EmitKind kind;
} emit_names[] = {
    {"tokens", EMIT_TOKENS}, {"ast", EMIT_AST}, {"types", EMIT_TYPES},
    {"core", EMIT_CORE},     {"ad", EMIT_AD},   {"llvm", EMIT_LLVM},
    {"asm", EMIT_ASM},       {"obj", EMIT_OBJ}, {"ptx", EMIT_PTX},
};

static void parse_args(int argc, char **argv)
{
    Options *o = &dcc_options;
    int i = 1;
    if (argc > 1 && strcmp(argv[1], "run") == 0) {
        o->run = true;
        i = 2;
    }
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (o->run && o->input) { /* dcc run file.dl ARGS: the rest are the program's */
            o->run_args = argv + i;
            o->nrun_args = argc - i;
            return;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (strcmp(a, "--version") == 0) {
            printf("dcc %s, the DL compiler\n", PACKAGE_VERSION);
            printf("llvm: %s\n", LLVM_VERSION_STRING);
            printf("stdlib: %s\n", module_stdlib_dir());
            printf("codegen: yes\n");
            exit(0);
        } else if (strcmp(a, "-o") == 0) {
            if (++i >= argc)
                usage_error("%s needs a file name", a);
            o->output = argv[i];
            compile_option = true;
        } else if (strcmp(a, "--header") == 0) {
            if (++i >= argc)
                usage_error("%s needs a file name", a);
            o->header = argv[i];
            compile_option = true;
        } else if (strncmp(a, "--header=", 9) == 0) {
            o->header = a + 9;
            compile_option = true;
        } else if (strcmp(a, "-i") == 0) {
            if (++i >= argc)
                usage_error("%s needs a file name", a);
            if (repl_load)
                usage_error("more than one -i file ('%s')", argv[i]);
            repl_load = argv[i];
            repl_wanted = true;
        } else if (strcmp(a, "-c") == 0) {
            o->compile_only = true;
            compile_option = true;
        } else if (strcmp(a, "-S") == 0) {
            o->asm_only = true;
            compile_option = true;
        } else if (strcmp(a, "-g") == 0) {
            o->debug_info = true;
        } else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
            o->opt_level = a[2] - '0';
        } else if (strncmp(a, "--emit=", 7) == 0) {
            size_t k;
            for (k = 0; k < sizeof emit_names / sizeof *emit_names; k++)
                if (strcmp(a + 7, emit_names[k].name) == 0)
                    break;
            if (k == sizeof emit_names / sizeof *emit_names)
                usage_error("unknown --emit stage '%s' (tokens, ast, types, core, ad, llvm, asm, obj, ptx)", a + 7);
            o->emit = emit_names[k].kind;
            compile_option = true;
        } else if (strncmp(a, "--color=", 8) == 0 || strncmp(a, "--colour=", 9) == 0) {
            const char *w = strchr(a, '=') + 1;
            if (strcmp(w, "always") == 0)
                o->colour = 1;
            else if (strcmp(w, "never") == 0)
                o->colour = 0;
            else if (strcmp(w, "auto") == 0)
                o->colour = -1;
            else
                usage_error("--color takes auto, always or never, not '%s'", w);
        } else if (strncmp(a, "--target=", 9) == 0) {
            if (strcmp(a + 9, "nvptx") != 0 && strcmp(a + 9, "host") != 0)
                usage_error("unknown target '%s' (host, nvptx)", a + 9);
            o->target = a + 9;
        } else if (strncmp(a, "--checkpoint=", 13) == 0) {
            /* reverse-mode loops: 0 store every iteration, k > 0 k segments,
             * sqrt: sqrt(n) segments (recompute inside a segment) */
            const char *v = a + 13;
            char *end;
            if (strcmp(v, "sqrt") == 0)
                ad_reverse_checkpoint = -1;
            else {
                long k = strtol(v, &end, 10);
                if (*v == 0 || *end || k < 0 || k > 1000000)
                    usage_error("--checkpoint takes a number of segments or 'sqrt', not '%s'", v);
                ad_reverse_checkpoint = (int)k;
            }
        } else if (strcmp(a, "--gpu") == 0) {
            o->gpu = true;
        } else if (strncmp(a, "--stdlib=", 9) == 0) {
            module_set_stdlib_dir(a + 9);
        } else if (!o->run && !o->input && strcmp(a, "run") == 0) {
            o->run = true; /* options may come before the subcommand: dcc -O3 run f.dl */
        } else if (strcmp(a, "-") == 0 || a[0] != '-') {
            if (o->input)
                usage_error("more than one input file ('%s')", a);
            o->input = a;
        } else {
            usage_error("unknown option '%s'", a);
        }
    }
}

/* With DCC_VERIFY set (the test suite sets it), checks the Core IR's
 * invariants after each stage; a broken invariant is a compiler bug. */
static void verify(CProgram *p, const char *after)
{
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("DCC_VERIFY");
        on = v && *v && strcmp(v, "0") != 0;
    }
    if (on && !core_verify(p))
        fatal("internal error: the Core IR is malformed after %s", after);
}

static int finish(void)
{
    fflush(stdout);
    return diag_error_count() ? 1 : 0;
}

/* Refuses an output path that names the input file (dcc f.dl -o f.dl would
 * replace the program by the executable). */
static void check_not_input(const char *out, const char *what)
{
    const Options *o = &dcc_options;
    if (!out || !o->input || strcmp(o->input, "-") == 0 || strcmp(out, "-") == 0)
        return;
    struct stat a, b;
    if (stat(o->input, &a) == 0 && stat(out, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        fprintf(stderr, "dcc: error: the %s '%s' is the input file; it would be overwritten\n", what, out);
        exit(1);
    }
}

static int dcc_main(int argc, char **argv);

struct main_args {
    int argc, status;
    char **argv;
};

static void *main_thread(void *p)
{
    struct main_args *a = p;
    a->status = dcc_main(a->argc, a->argv);
    return NULL;
}

/* The stages recurse over the program's structure; a 1 GiB stack (reserved,
 * not committed) lets long operator chains and deep nesting compile where
 * the default 8 MiB would overflow. */
int main(int argc, char **argv)
{
    struct main_args a = {argc, 1, argv};
    pthread_attr_t attr;
    pthread_t t;
    if (pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, (size_t)1 << 30) == 0 &&
        pthread_create(&t, &attr, main_thread, &a) == 0) {
        /* signals (Ctrl-C in the REPL) go to the compiler's thread */
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
        pthread_join(t, NULL);
        return a.status;
    }
    return dcc_main(argc, argv);
}

static int dcc_main(int argc, char **argv)
{
    parse_args(argc, argv);
    check_not_input(dcc_options.output, "output file");
    check_not_input(dcc_options.header, "header file");
    Options *o = &dcc_options;
    diag_set_colour(o->colour);

    /* dcc, dcc -i FILE: the REPL (a script session when stdin is not a
     * terminal); dcc - compiles the program on stdin. */
    if (repl_wanted || !o->input) {
        if (o->input && repl_wanted)
            usage_error("-i starts the REPL; it takes no other input file ('%s')", o->input);
        if (compile_option || o->run)
            usage_error("%s", "no input file (give FILE.dl, or '-' for standard input)");
        return repl_main(repl_load);
    }
    const char *display = strcmp(o->input, "-") == 0 ? "<stdin>" : o->input;

    if (o->emit == EMIT_TOKENS) {
        /* tokens need no imports: read the file directly */
        Vec order = {0};
        (void)order;
        FILE *f = strcmp(o->input, "-") == 0 ? stdin : fopen(o->input, "rb");
        if (!f)
            fatal("cannot open '%s': %m", o->input);
        StrBuf b = {0};
        int c;
        while ((c = fgetc(f)) != EOF)
            sb_putc(&b, (char)c);
        if (f != stdin)
            fclose(f);
        SrcFile *sf = diag_add_file(display, o->input, b.data ? b.data : "", b.len);
        lexer_dump_tokens(stdout, sf);
        return finish();
    }

    /* the module list is freed on every return below */
    Vec order __attribute__((cleanup(vec_free))) = {0};
    Module *root = module_load_root(o->input, display, &order);
    if (!root || diag_error_count())
        return finish();
    if (o->emit == EMIT_AST) {
        ast_dump_module(stdout, root);
        return finish();
    }
    typecheck_program(&order);
    if (diag_error_count())
        return finish();
    if (o->emit == EMIT_TYPES) {
        types_dump_module(stdout, root);
        return finish();
    }
    CProgram *prog = core_lower_program(&order, root);
    if (!prog || diag_error_count())
        return finish();
    verify(prog, "lowering");
    if (o->emit == EMIT_CORE) {
        core_print_program(stdout, prog);
        return finish();
    }
    /* Simplifying first exposes closures and learner plumbing to the AD
     * stages as direct code; the result is simplified again below. */
    if (o->opt_level > 0)
        core_simplify(prog, o->opt_level);
    verify(prog, "the simplifier");
    int first_ad_var = o->emit == EMIT_AD ? core_dl_next_var_id() : 0;
    if (!ad_transform_program(prog) || diag_error_count())
        return finish();
    verify(prog, "the AD stages");
    if (o->emit == EMIT_AD) {
        core_dl_print_program(stdout, prog, first_ad_var);
        return finish();
    }
    core_simplify(prog, o->opt_level);
    verify(prog, "the simplifier");
    if (diag_error_count())
        return finish();
    if (o->run) {
        fflush(stdout);
        return codegen_run(prog, o);
    }
    if (!codegen_program(prog, o))
        return 1;
    if (o->header) {
        if (!o->compile_only && o->emit != EMIT_OBJ)
            warning_at(loc_none, "--header is written with -c (compiling to an object file)");
        if (!cheader_write(prog, root, o->header, display))
            return 1;
    }
    return finish();
}
