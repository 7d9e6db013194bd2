/* match.c — (being written) */
#include "dcc.h"
