/* simplify.c — (being written) */
#include "dcc.h"
