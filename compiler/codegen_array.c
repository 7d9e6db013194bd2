/* codegen_array.c — (being written) */
#include "dcc.h"
