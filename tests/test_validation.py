"""Boundary validation: types, shapes, messages, torch inputs."""

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import errors
from vecindex_core.validation import as_float_matrix, as_ids, check_k


@pytest.mark.parametrize("name", errors.__all__)
def test_error_tree(name):
    cls = getattr(errors, name)
    assert issubclass(cls, vc.VecIndexError)
    builtin = {
        "InvalidDtypeError": TypeError, "UnknownIdError": KeyError,
        "NotTrainedError": RuntimeError, "NotSupportedError": NotImplementedError,
        "BackendError": RuntimeError, "VecIndexError": Exception,
    }.get(name, ValueError)
    assert issubclass(cls, builtin)


def test_layouts_are_coerced_to_c_float32():
    x = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
    out = as_float_matrix(x[:, ::2], 2)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x[:, ::2])
    same = np.ones((2, 3), np.float32)
    assert as_float_matrix(same) is same


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64", "int64"])
def test_torch_cpu_tensors(dtype):
    torch = pytest.importorskip("torch")
    t = torch.arange(8).reshape(2, 4).to(getattr(torch, dtype))
    out = as_float_matrix(t, 4)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.arange(8).reshape(2, 4))
    with pytest.raises(vc.DimensionMismatchError, match="4 dimensions, but this index expects 5"):
        as_float_matrix(t, 5)


def test_torch_cuda_tensor():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine (the CPU path above covers conversion)")
    t = torch.ones((2, 4), device="cuda", dtype=torch.bfloat16)
    assert as_float_matrix(t, 4).dtype == np.float32


def test_ragged_and_bad_k_messages():
    with pytest.raises(vc.InvalidArgumentError, match="could not be read"):
        as_float_matrix([[1, 2], [3]])
    assert check_k(np.int32(4)) == 4
    with pytest.raises(vc.InvalidDtypeError, match="'3'"):
        check_k("3")


def test_ids():
    assert as_ids(5).tolist() == [5]
    assert as_ids([2**64 - 2]).dtype == np.uint64
    with pytest.raises(vc.InvalidArgumentError, match="outside"):
        as_ids([2**64 + 5])
    with pytest.raises(vc.InvalidArgumentError, match="-3"):
        as_ids(np.array([1, -3]))
    with pytest.raises(vc.InvalidDtypeError, match="float64"):
        as_ids(np.array([1.0]))
    with pytest.raises(vc.InvalidArgumentError, match="3 entries, expected 2"):
        as_ids([1, 2, 3], 2)
