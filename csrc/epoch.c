/* epoch.c: the fused minibatch epoch. */
#include "fastopt.h"
