/* core.c — (being written) */
#include "dcc.h"
