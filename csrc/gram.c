/* gram.c: blockwise sufficient statistics for the closed form. */
#include "fastopt.h"
