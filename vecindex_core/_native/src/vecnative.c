/* vecindex_core._native._vecnative: the CPython module around the native kernels.
 *
 * Plain C API + buffer protocol (no numpy headers). Every kernel validates its buffers
 * (dtype, rank, shape, contiguity, writability) and raises vecindex_core.errors types, then
 * runs with the GIL released. The only globals are written during import: the detected CPU
 * features and the error classes. The instruction-set path is an argument of each call. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "native.h"
#include "pyglue.h"

vn_cpu_t g_cpu;
PyObject *g_err_arg;   /* InvalidArgumentError (ValueError) */
PyObject *g_err_dtype; /* InvalidDtypeError (TypeError) */
PyObject *g_err_dim;   /* DimensionMismatchError (ValueError) */

static const char *const ISA_NAMES[VN_NUM_ISA] = {"portable", "avx2", "avx512"};

static int isa_compiled(int isa) {
    if (isa == VN_PORTABLE) return 1;
    return VN_X86 && (isa == VN_AVX2 || isa == VN_AVX512);
}

/* ---------------------------------------------------------------- buffers */
static const char *const KIND_NAMES[] = {"uint64", "int64", "int32", "bool", "float32",
                                         "uint8", "uint16", "int16", "uint32", "int8",
                                         "float64"};

static int native_order(const char *f, const char **rest) {
    const int little = (*(const unsigned char *)&(uint16_t){1}) == 1;
    if (*f == '@' || *f == '=') f++;
    else if (*f == '<') {
        if (!little) return 0;
        f++;
    } else if (*f == '>' || *f == '!') {
        if (little) return 0;
        f++;
    }
    *rest = f;
    return 1;
}

static int format_is(const Py_buffer *b, enum vn_kind kd) {
    const char *f = b->format ? b->format : "B";
    if (!native_order(f, &f) || f[0] == '\0' || f[1] != '\0') return 0;
    switch (kd) {
    case K_U64: return b->itemsize == 8 && (f[0] == 'Q' || f[0] == 'L');
    case K_I64: return b->itemsize == 8 && (f[0] == 'q' || f[0] == 'l');
    case K_I32: return b->itemsize == 4 && (f[0] == 'i' || f[0] == 'l');
    case K_BOOL: return b->itemsize == 1 && f[0] == '?';
    case K_F32: return b->itemsize == 4 && f[0] == 'f';
    case K_U8: return b->itemsize == 1 && f[0] == 'B';
    case K_U16: return b->itemsize == 2 && f[0] == 'H';
    case K_I16: return b->itemsize == 2 && f[0] == 'h';
    case K_U32: return b->itemsize == 4 && (f[0] == 'I' || f[0] == 'L');
    case K_I8: return b->itemsize == 1 && f[0] == 'b';
    case K_F64: return b->itemsize == 8 && f[0] == 'd';
    }
    return 0;
}

int vn_get_buffer(PyObject *o, Py_buffer *b, const char *name, enum vn_kind kd, int ndim,
               int writable) {
    if (!PyObject_CheckBuffer(o)) {
        PyErr_Format(g_err_dtype, "%s must be a %s array, got %.200s", name, KIND_NAMES[kd],
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, b, flags) < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_Format(g_err_arg, "%s must be a C-contiguous%s %s array (%S)", name,
                     writable ? " writable" : "", KIND_NAMES[kd], value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return -1;
    }
    if (!format_is(b, kd)) {
        PyErr_Format(g_err_dtype, "%s must be a %s array, got buffer format '%s' (itemsize %zd)",
                     name, KIND_NAMES[kd], b->format ? b->format : "B", b->itemsize);
        PyBuffer_Release(b);
        return -1;
    }
    if (b->ndim != ndim) {
        PyErr_Format(g_err_arg, "%s must have %d dimension%s, got %d", name, ndim,
                     ndim == 1 ? "" : "s", b->ndim);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

int vn_get_buffers(PyObject *const *objs, const vn_buf_spec *spec, int n, Py_buffer *b,
                   int *have) {
    for (int t = 0; t < n; t++) {
        if (spec[t].optional && objs[t] == Py_None) continue;
        if (vn_get_buffer(objs[t], &b[t], spec[t].name, spec[t].kind, spec[t].ndim,
                          spec[t].writable) < 0)
            return -1;
        have[t] = 1;
    }
    return 0;
}

int vn_overlap(const Py_buffer *a, const Py_buffer *b) {
    if (a->len <= 0 || b->len <= 0) return 0;
    const uintptr_t a0 = (uintptr_t)a->buf, b0 = (uintptr_t)b->buf;
    return a0 < b0 + (uintptr_t)b->len && b0 < a0 + (uintptr_t)a->len;
}

int vn_apart(const Py_buffer *b, const int *have, int nbuf, int x0, int x1, const char *msg) {
    for (int x = x0; x <= x1; x++)
        for (int y = 0; y < nbuf; y++)
            if (y != x && have[x] && have[y] && vn_overlap(&b[x], &b[y])) {
                PyErr_SetString(g_err_arg, msg);
                return -1;
            }
    return 0;
}

int vn_query_range(Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t nq) {
    if (q0 < 0 || q1 < q0 || q1 > nq) {
        PyErr_Format(g_err_arg, "query range [%zd, %zd) is not within [0, %zd]", q0, q1, nq);
        return -1;
    }
    return 0;
}

int vn_rows_in(const int64_t *rows, Py_ssize_t from, Py_ssize_t to, Py_ssize_t n,
               const char *name) {
    for (Py_ssize_t t = from; t < to; t++)
        if (rows[t] < -1 || rows[t] >= n) {
            PyErr_Format(g_err_arg, "%s holds row %lld outside [-1, %zd)", name,
                         (long long)rows[t], n);
            return -1;
        }
    return 0;
}

PyObject *vn_finish(Py_buffer *b, const int *have, int n, int rc) {
    for (int t = n - 1; t >= 0; t--)
        if (have[t]) PyBuffer_Release(&b[t]);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

int vn_check_isa(int isa) {
    if (isa < 0 || isa >= VN_NUM_ISA || !isa_compiled(isa) || !vn_isa_usable(&g_cpu, isa)) {
        PyErr_Format(g_err_arg, "instruction-set path %d is not available on this build/CPU",
                     isa);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- hamming_topk */
PyDoc_STRVAR(hamming_topk_doc,
"hamming_topk(qcodes, codes_t, n, k, mask, q0, q1, out_d, out_s, isa)\n--\n\n"
"Hamming top-k of queries q0:q1 into out_d (int32 (nq, k)) and out_s (int64 (nq, k)).\n"
"qcodes uint64 (nq, w); codes_t uint64 (w, >= n) word-major; mask bool (>= n,) or None.\n"
"Runs without the GIL; see vecindex_core._native.hamming_topk for the Python wrapper.");

static PyObject *py_hamming_topk(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *oq, *oc, *om, *od, *os;
    Py_ssize_t n, k, q0, q1;
    int isa;
    if (!PyArg_ParseTuple(args, "OOnnOnnOOi:hamming_topk", &oq, &oc, &n, &k, &om, &q0, &q1,
                          &od, &os, &isa))
        return NULL;
    if (vn_check_isa(isa) < 0) return NULL;
    Py_buffer bq, bc, bm, bd, bs;
    int have_m = 0, rc = -1;
    if (vn_get_buffer(oq, &bq, "qcodes", K_U64, 2, 0) < 0) return NULL;
    if (vn_get_buffer(oc, &bc, "codes_t", K_U64, 2, 0) < 0) goto rel_q;
    if (om != Py_None) {
        if (vn_get_buffer(om, &bm, "mask", K_BOOL, 1, 0) < 0) goto rel_c;
        have_m = 1;
    }
    if (vn_get_buffer(od, &bd, "out_d", K_I32, 2, 1) < 0) goto rel_m;
    if (vn_get_buffer(os, &bs, "out_s", K_I64, 2, 1) < 0) goto rel_d;

    const Py_ssize_t nq = bq.shape[0], w = bq.shape[1];
    if (w < 1) {
        PyErr_Format(g_err_arg, "qcodes must have at least one uint64 word per code, got %zd",
                     w);
        goto rel_s;
    }
    if (w > VN_MAX_WORDS) { /* distances are int32; the per-query histogram has 64 w bins */
        PyErr_Format(g_err_arg, "codes of %zd uint64 words are too wide (at most %d)", w,
                     VN_MAX_WORDS);
        goto rel_s;
    }
    if (bc.shape[0] != w) {
        PyErr_Format(g_err_dim, "codes_t has %zd words per code, but qcodes has %zd",
                     bc.shape[0], w);
        goto rel_s;
    }
    if (n < 0 || n > bc.shape[1]) {
        PyErr_Format(g_err_arg, "n must be in [0, %zd] (columns of codes_t), got %zd",
                     bc.shape[1], n);
        goto rel_s;
    }
    if (k < 0) { /* k = 0: empty results, as the numba reference gives */
        PyErr_Format(g_err_arg, "k must be >= 0, got %zd", k);
        goto rel_s;
    }
    if (have_m && bm.shape[0] < n) {
        PyErr_Format(g_err_dim, "mask has %zd entries, but %zd rows are scanned", bm.shape[0],
                     n);
        goto rel_s;
    }
    if (bd.shape[0] != nq || bd.shape[1] != k || bs.shape[0] != nq || bs.shape[1] != k) {
        PyErr_Format(g_err_dim, "out_d and out_s must have shape (%zd, %zd), got (%zd, %zd) "
                     "and (%zd, %zd)", nq, k, bd.shape[0], bd.shape[1], bs.shape[0],
                     bs.shape[1]);
        goto rel_s;
    }
    if (q0 < 0 || q1 < q0 || q1 > nq) {
        PyErr_Format(g_err_arg, "query range [%zd, %zd) is not within [0, %zd]", q0, q1, nq);
        goto rel_s;
    }
    {
        vn_ham_args a;
        a.q = (const uint64_t *)bq.buf;
        a.codes = (const uint64_t *)bc.buf;
        a.mask = have_m ? (const uint8_t *)bm.buf : NULL;
        a.w = w;
        a.stride = bc.shape[1];
        a.n = n;
        a.k = k;
        a.out_d = (int32_t *)bd.buf;
        a.out_s = (int64_t *)bs.buf;
        int err = 0;
        if (k > 0) {
            Py_BEGIN_ALLOW_THREADS
            err = vn_hamming_topk(&a, q0, q1, isa);
            Py_END_ALLOW_THREADS
        }
        if (err) PyErr_NoMemory();
        else rc = 0;
    }
rel_s:
    PyBuffer_Release(&bs);
rel_d:
    PyBuffer_Release(&bd);
rel_m:
    if (have_m) PyBuffer_Release(&bm);
rel_c:
    PyBuffer_Release(&bc);
rel_q:
    PyBuffer_Release(&bq);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- f32_rows */
PyDoc_STRVAR(f32_rows_doc,
"f32_rows(x, dim)\n--\n\n"
"2 when x exports a C-contiguous native float32 buffer of shape (n, dim) with n >= 1,\n"
"1 when of shape (dim,), 0 otherwise (also unaligned, or a NaN or infinite value). Never\n"
"raises for any x (the cheap check of a search's queries; see validation.quick_float_rows).");

static PyObject *py_f32_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_Format(g_err_arg, "f32_rows takes 2 arguments, got %zd", nargs);
        return NULL;
    }
    Py_ssize_t dim = PyLong_AsSsize_t(args[1]);
    if (dim == -1 && PyErr_Occurred()) return NULL;
    PyObject *x = args[0];
    long res = 0;
    Py_buffer b;
    if (dim < 1 || !PyObject_CheckBuffer(x)) return PyLong_FromLong(0);
    if (PyObject_GetBuffer(x, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return PyLong_FromLong(0);
    }
    if (format_is(&b, K_F32) && ((uintptr_t)b.buf & 3u) == 0 &&
        ((b.ndim == 2 && b.shape[1] == dim && b.shape[0] >= 1) ||
         (b.ndim == 1 && b.shape[0] == dim))) {
        const uint32_t *w = (const uint32_t *)b.buf;
        const Py_ssize_t size = b.len / 4;
        uint32_t bad = 0;
        /* exponent all ones: NaN or infinity; branch-free so the loop vectorises */
        for (Py_ssize_t i = 0; i < size; i++) bad |= (uint32_t)((w[i] & 0x7f800000u) == 0x7f800000u);
        if (!bad) res = b.ndim;
    }
    PyBuffer_Release(&b);
    return PyLong_FromLong(res);
}

/* ---------------------------------------------------------------- introspection */
static PyObject *py_cpu_features(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return Py_BuildValue("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "x86_64",
                         VN_X86 ? Py_True : Py_False, "popcnt",
                         g_cpu.popcnt ? Py_True : Py_False, "avx2",
                         g_cpu.avx2 ? Py_True : Py_False, "avx512f",
                         g_cpu.avx512f ? Py_True : Py_False, "avx512bw",
                         g_cpu.avx512bw ? Py_True : Py_False, "avx512vpopcntdq",
                         g_cpu.avx512vpopcntdq ? Py_True : Py_False, "avx512vnni",
                         g_cpu.avx512vnni ? Py_True : Py_False, "avx512vbmi",
                         g_cpu.avx512vbmi ? Py_True : Py_False);
}

static PyObject *isa_tuple(int usable_only) {
    PyObject *t = PyList_New(0);
    if (!t) return NULL;
    for (int i = 0; i < VN_NUM_ISA; i++) {
        if (!isa_compiled(i) || (usable_only && !vn_isa_usable(&g_cpu, i))) continue;
        PyObject *s = PyUnicode_FromString(ISA_NAMES[i]);
        if (!s || PyList_Append(t, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(t);
            return NULL;
        }
        Py_DECREF(s);
    }
    PyObject *r = PyList_AsTuple(t);
    Py_DECREF(t);
    return r;
}

static PyObject *py_compiled_isas(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return isa_tuple(0);
}

static PyObject *py_usable_isas(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return isa_tuple(1);
}

static PyMethodDef methods[] = {
    {"f32_rows", (PyCFunction)(void (*)(void))py_f32_rows, METH_FASTCALL, f32_rows_doc},
    {"hamming_topk", py_hamming_topk, METH_VARARGS, hamming_topk_doc},
    {"cpu_features", py_cpu_features, METH_NOARGS, "CPU features detected at import."},
    {"compiled_isas", py_compiled_isas, METH_NOARGS,
     "Instruction-set paths compiled into this build, best last."},
    {"usable_isas", py_usable_isas, METH_NOARGS,
     "Compiled paths this CPU runs, best last (ids are their positions in ISA_NAMES)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "_vecnative",
    "Native SIMD kernels of vecindex_core (see vecindex_core._native).", -1, methods,
    NULL, NULL, NULL, NULL,
};

static PyObject *get_error(PyObject *errors, const char *name, PyObject *fallback) {
    PyObject *e = errors ? PyObject_GetAttrString(errors, name) : NULL;
    if (!e) {
        PyErr_Clear();
        Py_INCREF(fallback);
        return fallback;
    }
    return e;
}

PyMODINIT_FUNC PyInit__vecnative(void) {
    vn_detect_cpu(&g_cpu);
    PyObject *errors = PyImport_ImportModule("vecindex_core.errors");
    if (!errors) PyErr_Clear();
    g_err_arg = get_error(errors, "InvalidArgumentError", PyExc_ValueError);
    g_err_dtype = get_error(errors, "InvalidDtypeError", PyExc_TypeError);
    g_err_dim = get_error(errors, "DimensionMismatchError", PyExc_ValueError);
    Py_XDECREF(errors);
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    if (PyModule_AddFunctions(m, vn_lut_methods) < 0) goto fail;
    if (PyModule_AddFunctions(m, vn_topk_methods) < 0) goto fail;
    if (PyModule_AddFunctions(m, vn_tables_methods) < 0) goto fail;
    if (PyModule_AddFunctions(m, vn_planes_methods) < 0) goto fail;
    PyObject *names = PyTuple_New(VN_NUM_ISA);
    if (!names) goto fail;
    for (int i = 0; i < VN_NUM_ISA; i++) {
        PyObject *s = PyUnicode_FromString(ISA_NAMES[i]);
        if (!s) {
            Py_DECREF(names);
            goto fail;
        }
        PyTuple_SET_ITEM(names, i, s);
    }
    if (PyModule_AddObject(m, "ISA_NAMES", names) < 0) {
        Py_DECREF(names);
        goto fail;
    }
#ifdef VN_EMULATE_AVX512
    if (PyModule_AddIntConstant(m, "EMULATED_AVX512", 1) < 0) goto fail;
#else
    if (PyModule_AddIntConstant(m, "EMULATED_AVX512", 0) < 0) goto fail;
#endif
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
