/* codegen_print.c — (being written) */
#include "dcc.h"
