#include "dcc.h"
int repl_main(const char *load) { (void)load; return 1; }
