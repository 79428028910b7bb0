"""Boundary validation (``vecindex_core.validation``): types, shapes, messages, torch inputs."""

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import MISSING, errors
from vecindex_core.validation import (
    MAX_K,
    as_float_matrix,
    as_ids,
    as_mask,
    as_slots,
    check_k,
    check_metric,
    is_torch_tensor,
)

BUILTIN = {
    "VecIndexError": Exception,
    "InvalidArgumentError": ValueError,
    "InvalidDtypeError": TypeError,
    "DimensionMismatchError": ValueError,
    "NonFiniteError": ValueError,
    "EmptyInputError": ValueError,
    "DuplicateIdError": ValueError,
    "UnknownIdError": KeyError,
    "InvalidParameterError": ValueError,
    "UnknownIndexError": ValueError,
    "NotTrainedError": RuntimeError,
    "NotSupportedError": NotImplementedError,
    "IndexFormatError": ValueError,
    "FilterError": ValueError,
    "BackendError": RuntimeError,
    "ServiceUnavailableError": ConnectionError,
}


# --------------------------------------------------------------------------- error tree
def test_every_error_is_listed():
    assert sorted(errors.__all__) == sorted(BUILTIN)
    for name in errors.__all__:
        assert getattr(vc, name) is getattr(errors, name), f"{name} is not exported"


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_error_tree(name):
    cls = getattr(errors, name)
    assert issubclass(cls, vc.VecIndexError)
    assert issubclass(cls, BUILTIN[name])
    with pytest.raises(BUILTIN[name], match="boom"):
        raise cls("boom")


def test_specific_errors_are_invalid_arguments():
    for cls in (vc.DimensionMismatchError, vc.NonFiniteError, vc.EmptyInputError,
                vc.DuplicateIdError, vc.InvalidParameterError, vc.UnknownIndexError,
                vc.IndexFormatError):
        assert issubclass(cls, vc.InvalidArgumentError)
    assert str(vc.UnknownIdError("ids [3] are not in the index")) == (
        "ids [3] are not in the index"
    )


# --------------------------------------------------------------------------- float matrices
def test_canonical_input_is_returned_as_is():
    same = np.ones((2, 3), np.float32)
    assert as_float_matrix(same) is same
    assert as_float_matrix(same, 3) is same


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int64", "uint16"])
def test_numpy_dtypes_are_coerced(dtype):
    x = np.arange(12).reshape(3, 4).astype(dtype)
    out = as_float_matrix(x, 4)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (3, 4)
    np.testing.assert_array_equal(out, np.arange(12).reshape(3, 4))


def test_layouts_are_coerced_to_c_float32():
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    for x in (np.asfortranarray(base), base[:, ::2], base[::2], base.T, np.asfortranarray(
            base.astype(np.float32))):
        out = as_float_matrix(x)
        assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.owndata
        np.testing.assert_array_equal(out, x)


def test_inputs_are_never_mutated():
    x = np.array([[3.0, 4.0]], np.float64)
    keep = x.copy()
    as_float_matrix(x, 2)
    np.testing.assert_array_equal(x, keep)
    ids = np.array([5, 3], np.int64)
    as_ids(ids)
    as_slots(ids, 10)
    assert ids.tolist() == [5, 3]


def test_one_d_is_one_row_and_lists_work():
    assert as_float_matrix([1, 2, 3]).shape == (1, 3)
    assert as_float_matrix([[1, 2, 3], [4, 5, 6]], 3).shape == (2, 3)
    assert as_float_matrix((1.5, 2.5)).tolist() == [[1.5, 2.5]]


@pytest.mark.parametrize(("x", "error", "match"), [
    (np.array([["a", "b"]]), vc.InvalidDtypeError, "x has dtype <U1, expected a real float"),
    ("abc", vc.InvalidDtypeError, "dtype <U3"),
    (np.ones((1, 2), complex), vc.InvalidDtypeError, "dtype complex128"),
    (np.ones((1, 2), bool), vc.InvalidDtypeError, "dtype bool"),
    (np.array([[object(), 1]]), vc.InvalidDtypeError, "dtype object"),
    (None, vc.InvalidDtypeError, "dtype object"),
    (np.ones((1, 2), "datetime64[s]"), vc.InvalidDtypeError, "datetime64"),
    ([[1, 2], [3]], vc.InvalidArgumentError, "x could not be read as an array"),
    (np.ones((2, 2, 2)), vc.InvalidArgumentError, r"x has 3 dimensions \(shape \(2, 2, 2\)\)"),
    (np.float64(1.0), vc.InvalidArgumentError, "0 dimensions"),
    (np.ones((3, 0)), vc.InvalidArgumentError, r"shape \(3, 0\).*at least 1 dim"),
])
def test_bad_vectors(x, error, match):
    with pytest.raises(error, match=match):
        as_float_matrix(x)


def test_dimension_mismatch_names_both_numbers():
    with pytest.raises(vc.DimensionMismatchError,
                       match="^q has 380 dimensions, but this index expects 384$"):
        as_float_matrix(np.ones((2, 380)), 384, name="q")
    with pytest.raises(vc.DimensionMismatchError, match="5 dimensions, but this index expects 4"):
        as_float_matrix(np.ones(5), 4)


def test_empty_batches():
    with pytest.raises(vc.EmptyInputError, match=r"x is an empty batch \(shape \(0, 4\)\)"):
        as_float_matrix(np.empty((0, 4)), 4)
    assert as_float_matrix(np.empty((0, 4)), 4, allow_empty=True).shape == (0, 4)


def test_an_empty_list_is_an_empty_batch():
    with pytest.raises(vc.EmptyInputError, match="empty"):
        as_float_matrix([], 4)


@pytest.mark.parametrize(("value", "shown"), [(np.nan, "nan"), (np.inf, "inf"),
                                               (-np.inf, "-inf"), (1e39, "inf")])
def test_non_finite_values_name_their_position(value, shown):
    x = np.zeros((3, 4))
    x[2, 1] = value
    with pytest.raises(vc.NonFiniteError, match=f"non-finite value {shown} at row 2, column 1"):
        as_float_matrix(x)


def test_float64_beyond_float32_range_mentions_the_range():
    with pytest.raises(vc.NonFiniteError, match=r"float32 range is \+-3\.403e\+38"):
        as_float_matrix(np.array([[1e300]]))


# --------------------------------------------------------------------------- torch
def torch_or_skip():
    return pytest.importorskip("torch", reason="torch is an optional extra")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64", "int32",
                                   "int64", "uint8"])
def test_torch_cpu_tensors(dtype):
    torch = torch_or_skip()
    t = torch.arange(8).reshape(2, 4).to(getattr(torch, dtype))
    assert is_torch_tensor(t) and not is_torch_tensor(np.zeros(2))
    out = as_float_matrix(t, 4)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.arange(8).reshape(2, 4))
    with pytest.raises(vc.DimensionMismatchError, match="4 dimensions, but this index expects 5"):
        as_float_matrix(t, 5)


def test_torch_values_are_converted_exactly():
    torch = torch_or_skip()
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        t = torch.from_numpy(x).to(dtype)
        np.testing.assert_array_equal(as_float_matrix(t), t.to(torch.float32).numpy())


def test_torch_layouts_grad_and_1d():
    torch = torch_or_skip()
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    out = as_float_matrix(base.T, 3)  # a non-contiguous view
    assert out.flags.c_contiguous and out.dtype == np.float32
    np.testing.assert_array_equal(out, base.T.numpy())
    needs_grad = torch.ones(2, 3, requires_grad=True)
    assert as_float_matrix(needs_grad).shape == (2, 3)
    assert as_float_matrix(torch.ones(3)).shape == (1, 3)


def test_torch_bad_tensors():
    torch = torch_or_skip()
    with pytest.raises(vc.InvalidDtypeError, match="torch.complex64"):
        as_float_matrix(torch.ones(2, 2, dtype=torch.complex64))
    with pytest.raises(vc.InvalidDtypeError, match="torch.bool"):
        as_float_matrix(torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(vc.NonFiniteError, match="nan"):
        as_float_matrix(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(vc.NonFiniteError, match="inf"):
        as_float_matrix(torch.tensor([[1e39]], dtype=torch.float64))
    with pytest.raises(vc.InvalidDtypeError, match="k must be an integer"):
        check_k(torch.tensor(3))


def test_torch_ids_and_masks():
    torch = torch_or_skip()
    assert as_ids(torch.tensor([3, 1])).tolist() == [3, 1]
    assert as_ids(torch.tensor([3, 1])).dtype == np.uint64
    with pytest.raises(vc.InvalidArgumentError, match="-1"):
        as_ids(torch.tensor([3, -1]))
    with pytest.raises(vc.InvalidDtypeError, match="float32"):
        as_ids(torch.tensor([1.0]))
    with pytest.raises(vc.InvalidDtypeError, match="bool"):
        as_ids(torch.tensor([True]))


def test_torch_bool_masks():
    # masks are the one place a bool tensor is the right input
    torch = torch_or_skip()
    assert as_mask(torch.tensor([True, False]), 2).tolist() == [True, False]
    index = vc.FlatIndex(2, "ip")
    index.add(np.eye(2))
    assert index.search([1, 1], 2, mask=torch.tensor([False, True])).ids.tolist() == [[1, -1]]


def test_torch_cuda_tensors():
    torch = torch_or_skip()
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine; the CPU tests cover conversion")
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        t = torch.arange(8, device="cuda").reshape(2, 4).to(dtype)
        out = as_float_matrix(t, 4)
        assert out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, np.arange(8).reshape(2, 4))
    assert as_ids(torch.tensor([4, 2], device="cuda")).tolist() == [4, 2]


# --------------------------------------------------------------------------- k and metric
@pytest.mark.parametrize("k", [1, 5, MAX_K, np.int32(4), np.uint64(7), np.int8(1)])
def test_good_k(k):
    assert check_k(k) == int(k) and type(check_k(k)) is int


@pytest.mark.parametrize(("k", "error", "match"), [
    (0, vc.InvalidArgumentError, f"k must be between 1 and {MAX_K}, got 0"),
    (-1, vc.InvalidArgumentError, "got -1"),
    (MAX_K + 1, vc.InvalidArgumentError, f"got {MAX_K + 1}"),
    (2**64, vc.InvalidArgumentError, f"got {2**64}"),
    (2.5, vc.InvalidDtypeError, "k must be an integer, got 2.5 of type float"),
    (3.0, vc.InvalidDtypeError, "got 3.0 of type float"),
    (np.float32(3), vc.InvalidDtypeError, "float32"),
    (True, vc.InvalidDtypeError, "got True of type bool"),
    (np.bool_(True), vc.InvalidDtypeError, "bool"),
    ("3", vc.InvalidDtypeError, "got '3' of type str"),
    (None, vc.InvalidDtypeError, "got None of type NoneType"),
    (np.array([3]), vc.InvalidDtypeError, "ndarray"),
])
def test_bad_k(k, error, match):
    with pytest.raises(error, match=match):
        check_k(k)


def test_metric():
    for m in vc.METRICS:
        assert check_metric(m) == m
    for bad in ("cos", "L2", "", None, 3):
        with pytest.raises(vc.InvalidArgumentError, match="expected one of 'cosine', 'ip', 'l2'"):
            check_metric(bad)


# --------------------------------------------------------------------------- ids
def test_ids_good():
    assert as_ids(5).tolist() == [5] and as_ids(np.uint64(5)).tolist() == [5]
    assert as_ids([]).shape == (0,) and as_ids([]).dtype == np.uint64
    assert as_ids([2**64 - 2]).dtype == np.uint64
    assert as_ids([2**64 - 2]).tolist() == [2**64 - 2]
    assert as_ids([2**63 + 1, 2**63 + 2]).tolist() == [2**63 + 1, 2**63 + 2]
    assert as_ids(np.array([1, 2], np.int32)).dtype == np.uint64
    assert as_ids(np.array([7], np.uint8)).tolist() == [7]
    assert as_ids((1, 2), 2).tolist() == [1, 2]


@pytest.mark.parametrize("ids", [
    [1, 2**63 + 5],
    [0, 2**64 - 2],
    [2**63 + 5, 3, 2**63 + 9],
])
def test_python_int_ids_mixing_small_and_above_2_63(ids):
    # a list of valid uint64 ids must never go through float64 (numpy's promotion of a
    # list that mixes int64- and uint64-only values)
    out = as_ids(ids)
    assert out.dtype == np.uint64 and out.tolist() == ids


@pytest.mark.parametrize(("ids", "error", "match"), [
    ([1, -3], vc.InvalidArgumentError, "ids contains -3, but ids must be >= 0"),
    (np.array([1, -3]), vc.InvalidArgumentError, "-3"),
    (-1, vc.InvalidArgumentError, "-1"),
    ([-1, 2**63 + 5], vc.InvalidArgumentError, "-1"),
    ([MISSING], vc.InvalidArgumentError, r"18446744073709551615 \(2\*\*64-1\), which is reserved"),
    (np.array([MISSING], np.uint64), vc.InvalidArgumentError, "reserved"),
    ([3, MISSING], vc.InvalidArgumentError, "reserved"),
    ([2**64 + 5], vc.InvalidArgumentError, "18446744073709551621, outside"),
    ([2**100], vc.InvalidArgumentError, "outside"),
    ([1.0], vc.InvalidDtypeError, "ids must be integers, got dtype float64"),
    (np.array([1.5], np.float32), vc.InvalidDtypeError, "float32"),
    (2.0, vc.InvalidDtypeError, "float"),
    (["1"], vc.InvalidDtypeError, "<U1"),
    ([True, False], vc.InvalidDtypeError, "bool"),
    ([1, None], vc.InvalidDtypeError, "integers"),
    ([[1, 2]], vc.InvalidArgumentError, r"ids must be 1-D, got shape \(1, 2\)"),
])
def test_ids_bad(ids, error, match):
    with pytest.raises(error, match=match):
        as_ids(ids)


def test_ids_length_must_match_rows():
    with pytest.raises(vc.InvalidArgumentError, match=r"ids has 3 entries, expected 2"):
        as_ids([1, 2, 3], 2)
    with pytest.raises(vc.InvalidArgumentError, match="allow has 1 entries, expected 4"):
        as_ids([1], 4, name="allow")


# --------------------------------------------------------------------------- slots and masks
def test_slots():
    assert as_slots([3, 1, 3], 5).tolist() == [1, 3]
    assert as_slots([3, 1, 3], 5, unique=False).tolist() == [3, 1, 3]
    assert as_slots(np.array([4], np.uint64), 5).dtype == np.int64
    assert as_slots([], 0).shape == (0,)
    with pytest.raises(vc.InvalidArgumentError, match=r"slots contains 5, outside \[0, 5\)"):
        as_slots([0, 5], 5)
    with pytest.raises(vc.InvalidArgumentError, match=r"-1, outside \[0, 5\)"):
        as_slots([-1], 5)
    with pytest.raises(vc.InvalidArgumentError, match="outside"):
        as_slots(np.array([2**63 + 1], np.uint64), 5)
    with pytest.raises(vc.InvalidDtypeError, match="float64"):
        as_slots([1.0], 5)


def test_masks():
    assert as_mask([True, False, True], 3).tolist() == [True, False, True]
    m = np.zeros(4, bool)[::1]
    assert as_mask(m, 4).flags.c_contiguous
    assert as_mask(np.zeros(8, bool)[::2], 4).flags.c_contiguous
    with pytest.raises(vc.InvalidDtypeError, match="mask must have dtype bool, got int64"):
        as_mask(np.ones(3, np.int64), 3)
    with pytest.raises(vc.InvalidArgumentError, match=r"mask has shape \(2,\), expected \(3,\)"):
        as_mask(np.ones(2, bool), 3)
    with pytest.raises(vc.InvalidArgumentError, match=r"allow has shape \(1, 3\)"):
        as_mask(np.ones((1, 3), bool), 3, name="allow")
