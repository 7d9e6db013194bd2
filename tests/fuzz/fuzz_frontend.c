/* fuzz_frontend.c — libFuzzer target for the front end: lexing, parsing,
 * import resolution and type inference of arbitrary bytes.
 *
 * The property: any input ends in diagnostics or success — never a crash,
 * a hang, undefined behaviour (UBSan) or a leak (LeakSanitizer).
 * Build and run: ./dev fuzz [SECONDS]   (make -C build fuzz) */
#include "dcc.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull) {
        devnull = fopen("/dev/null", "w");
        diag_set_stream(devnull);
        diag_set_max_errors(50);
    }
    diag_reset();
    Vec order = {0};
    Module *root = module_load_text("fuzz.dl", (const char *)data, size, &order);
    if (root && diag_error_count() == 0) {
        typecheck_program(&order);
        if (diag_error_count() == 0)
            types_dump_module(devnull, root); /* --emit=types */
    }
    vec_free(&order);
    /* Nothing may survive into the next input: module_reset forgets the
     * modules, the source files and the checker's caches (typecheck_reset),
     * then the arena goes; LeakSanitizer reports whatever was left. */
    module_reset();
    arena_free(dcc_arena);
    return 0;
}
