/* ad_taylor.c — (being written) */
#include "dcc.h"
