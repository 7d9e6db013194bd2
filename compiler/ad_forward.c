/* ad_forward.c — (being written) */
#include "dcc.h"
