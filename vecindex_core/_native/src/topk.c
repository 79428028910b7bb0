/* Float32 top-k selection over score blocks (see ../topk.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "native.h"
#include "pyglue.h"

PyMethodDef vn_topk_methods[] = {
    {NULL, NULL, 0, NULL},
};
