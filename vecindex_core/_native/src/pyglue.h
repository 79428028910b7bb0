/* Internal Python glue shared by the kernel files of _vecnative (buffer checks, typed
 * errors, the instruction-set check and each file's method table). Include after
 * <Python.h> and native.h. Everything here is set up by PyInit__vecnative in vecnative.c. */
#ifndef VECNATIVE_PYGLUE_H
#define VECNATIVE_PYGLUE_H

#include <Python.h>

#include "native.h"

/* Element types a buffer can be required to hold. */
enum vn_kind { K_U64, K_I64, K_I32, K_BOOL, K_F32, K_U8, K_U16, K_I16, K_U32, K_I8, K_F64 };

extern vn_cpu_t g_cpu;
extern PyObject *g_err_arg;   /* vecindex_core.errors.InvalidArgumentError (ValueError) */
extern PyObject *g_err_dtype; /* InvalidDtypeError (TypeError) */
extern PyObject *g_err_dim;   /* DimensionMismatchError (ValueError) */

/* Acquire a C-contiguous buffer of the given kind and rank (writable when asked); on
 * failure raises our typed error naming `name` and returns -1 (nothing to release). */
int vn_get_buffer(PyObject *o, Py_buffer *b, const char *name, enum vn_kind kd, int ndim,
                  int writable);
/* A buffer argument: vn_get_buffer's name, kind, rank and writability; an optional one may
 * be None (then not held). */
typedef struct {
    const char *name;
    enum vn_kind kind;
    int ndim, writable, optional;
} vn_buf_spec;
/* vn_get_buffer of each objs[t] into b[t], have[t] set for each held; -1 (raised) at the
 * first failure, the earlier ones held (release them with vn_finish). */
int vn_get_buffers(PyObject *const *objs, const vn_buf_spec *spec, int n, Py_buffer *b,
                   int *have);
/* 1 when the byte ranges of two (non-empty) buffers intersect. */
int vn_overlap(const Py_buffer *a, const Py_buffer *b);
/* 0 when each held output buffer b[x0..x1] shares no memory with another held buffer; else
 * raises with msg. */
int vn_apart(const Py_buffer *b, const int *have, int nbuf, int x0, int x1, const char *msg);
/* 0 when 0 <= q0 <= q1 <= nq; else raises. */
int vn_query_range(Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t nq);
/* 0 when every row of rows[from .. to) lies in [-1, n) (-1: none); else raises naming it. */
int vn_rows_in(const int64_t *rows, Py_ssize_t from, Py_ssize_t to, Py_ssize_t n,
               const char *name);
/* Release the held buffers b[t] (have[t] set) of a call, last first, and return its
 * result: NULL when rc < 0 (an error is set), else None. */
PyObject *vn_finish(Py_buffer *b, const int *have, int n, int rc);
/* 0 when `isa` (an enum vn_isa value) is compiled in and this CPU runs it; else raises. */
int vn_check_isa(int isa);

/* Each kernel file's Python functions, added to the module at import. */
extern PyMethodDef vn_lut_methods[]; /* lut.c */
extern PyMethodDef vn_topk_methods[]; /* topk.c */
extern PyMethodDef vn_tables_methods[]; /* tables.c */
extern PyMethodDef vn_planes_methods[]; /* planes.c */

#endif
