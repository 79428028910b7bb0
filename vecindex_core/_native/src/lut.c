/* Lookup-table scans over 4-bit / 2-bit / 1-bit codes (see ../lut.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "native.h"
#include "pyglue.h"

PyMethodDef vn_lut_methods[] = {
    {NULL, NULL, 0, NULL},
};
