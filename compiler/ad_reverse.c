/* ad_reverse.c — (being written) */
#include "dcc.h"
