/* codegen.c — (being written) */
#include "dcc.h"
