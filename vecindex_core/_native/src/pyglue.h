/* Internal Python glue shared by the kernel files of _vecnative (buffer checks, typed
 * errors, the instruction-set check and each file's method table). Include after
 * <Python.h> and native.h. Everything here is set up by PyInit__vecnative in vecnative.c. */
#ifndef VECNATIVE_PYGLUE_H
#define VECNATIVE_PYGLUE_H

#include <Python.h>

#include "native.h"

/* Element types a buffer can be required to hold. */
enum vn_kind { K_U64, K_I64, K_I32, K_BOOL, K_F32, K_U8, K_U16, K_I16, K_U32 };

extern vn_cpu_t g_cpu;
extern PyObject *g_err_arg;   /* vecindex_core.errors.InvalidArgumentError (ValueError) */
extern PyObject *g_err_dtype; /* InvalidDtypeError (TypeError) */
extern PyObject *g_err_dim;   /* DimensionMismatchError (ValueError) */

/* Acquire a C-contiguous buffer of the given kind and rank (writable when asked); on
 * failure raises our typed error naming `name` and returns -1 (nothing to release). */
int vn_get_buffer(PyObject *o, Py_buffer *b, const char *name, enum vn_kind kd, int ndim,
                  int writable);
/* 1 when the byte ranges of two (non-empty) buffers intersect. */
int vn_overlap(const Py_buffer *a, const Py_buffer *b);
/* 0 when `isa` (an enum vn_isa value) is compiled in and this CPU runs it; else raises. */
int vn_check_isa(int isa);

/* Each kernel file's Python functions, added to the module at import. */
extern PyMethodDef vn_lut_methods[]; /* lut.c */
extern PyMethodDef vn_topk_methods[]; /* topk.c */
extern PyMethodDef vn_tables_methods[]; /* tables.c */

#endif
