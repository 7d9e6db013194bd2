/* lower.c — (being written) */
#include "dcc.h"
