"""Learned vector compressors: the encoder behind the ``ivf_ae`` index kind.

A :class:`Compressor` maps ``d``-dimensional vectors to ``compression_dim`` dimensions so that
the inner product of two codes, ``<encode(q), encode(x)>``, ranks base vectors the way the
original metric does. It is trained once with torch (:func:`train_compressor`, the optional
``torch`` extra) and afterwards needs numpy only: encoding, saving and loading never import
torch.

Architecture
------------
The encoder is a linear map ``z = x @ W0 + b0`` (or, with ``hidden_dim > 0``, a residual MLP
``z = x @ W0 + b0 + relu(x @ W1 + b1) @ W2 + b2``), followed, for the ``cosine`` metric and
for the ``cell`` objective, by L2 normalisation of ``z``. For ``cosine`` the input rows are
L2-normalised first. The linear part is initialised from PCA (uncentred for ``cosine``/``ip``,
centred for ``l2``), so training starts from the strongest cheap baseline and refines it.
On 20,000 MiniLM embeddings (``benchmarks/results/ivf_ae_compressor.md``) a 512-wide hidden
layer added nothing at 384 -> 96 and +0.016 recall@10 at 384 -> 48, for 4x the encoding
cost, hence the linear default (``hidden_dim`` opts in).

Objectives
----------
``"autoencoder"`` (default)
    The encoder is trained to reproduce the *similarity structure* of the data: for a batch of
    rows, the softmax over the other rows of the codes' similarities (temperature 0.05) is
    fitted to the softmax of the original similarities (KL divergence, "neighbourhood
    distillation"). The original similarity is the inner product for ``cosine``/``ip`` and the
    negated squared distance for ``l2``, scaled by the data's mean squared norm, so the
    temperature means the same thing on any scale. Decoding the codes' Gram matrix instead of
    the vectors themselves is what search needs: the index scores ``<enc(q), enc(x)>``.
    ``autoencoder_loss`` selects the two alternatives that were measured against it:
    ``"reconstruction"`` (a linear decoder back to ``d``, MSE on the vectors) and ``"gram"``
    (MSE between the code and original similarity matrices).
``"cell"``
    As fast-ivf's ``TFCentroidCompressor``: the code layer is a bottleneck trained, through a
    ReLU and a linear softmax head over ``nlist`` classes, to predict each row's k-means cell
    (cross-entropy, label smoothing 0.01, input dropout 0.2). The codes are the bottleneck's
    pre-activations, L2-normalised.

The default won the measurement (``benchmarks/ivf_ae_compressor.py`` on 20,000 MiniLM
embeddings): better than ``"cell"`` on every measure at 4x and 8x compression, and better than
the PCA it starts from. Recall@10 of an exact scan of the codes: 0.720 (autoencoder) vs 0.702
(PCA, unit-norm codes) vs 0.500 (cell) at 384 -> 96; 0.514 vs 0.475 vs 0.410 at 384 -> 48.

Scores between codes: ``<encode(q), encode(x)>`` for ``cosine``/``ip``, and
``-|encode(q) - encode(x)|^2`` for ``l2`` (for the ``cell`` objective the codes are unit-norm,
so both rank alike).

Training is deterministic for a ``seed`` on CPU, whatever the thread settings: parameters are
initialised from PCA and from a seeded ``torch.Generator``, batches are drawn from the same
generator, torch's global random state is never touched,
``torch.use_deterministic_algorithms`` is enabled for the duration of the call, and torch
trains on one thread (the steps are too small to split: with two threads a busy neighbour
pool made training 10-100x slower); its previous thread count and determinism flag are
restored afterwards. The PCA initialisation runs with one BLAS thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from ._threads import one_blas_thread
from .errors import (
    EmptyInputError,
    IndexFormatError,
    InvalidArgumentError,
    InvalidDtypeError,
    InvalidParameterError,
    NotSupportedError,
)
from .types import METRICS, FloatMatrix, Metric
from .validation import as_float_matrix, check_int, check_metric, is_torch_tensor

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "AUTOENCODER_LOSSES",
    "DEFAULT_OBJECTIVE",
    "OBJECTIVES",
    "AutoencoderLoss",
    "Compressor",
    "Objective",
    "require_torch",
    "train_compressor",
]

Objective = Literal["autoencoder", "cell"]
AutoencoderLoss = Literal["similarity", "reconstruction", "gram"]
#: Training objectives, in documentation order.
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)
#: Losses of the ``"autoencoder"`` objective; the first is the default.
AUTOENCODER_LOSSES: tuple[AutoencoderLoss, ...] = get_args(AutoencoderLoss)
#: The objective that won the measurement in ``benchmarks/ivf_ae_compressor.py``.
DEFAULT_OBJECTIVE: Objective = "autoencoder"

#: Per-objective training defaults: (optimizer steps when ``epochs`` is None, batch_size,
#: learning rate). Steps, not epochs: the cost does not grow with the training set.
_DEFAULTS: dict[str, tuple[int, int, float]] = {
    "autoencoder": (100, 1024, 3e-3),
    "cell": (1500, 256, 5e-3),
}
_TEMPERATURE = 0.05  # softmax temperature of the distillation (similarities / mean |x|^2)
_CELL_DROPOUT = 0.2  # input dropout of the cell objective (fast-ivf's value)
_CELL_LABEL_SMOOTHING = 0.01  # fast-ivf's value
_ENCODE_CHUNK = 65536  # rows encoded at a time by the MLP encoder (bounds its scratch memory)
_TORCH_HINT = "pip install 'vecindex[torch]'"


# --------------------------------------------------------------------------- torch import
def require_torch(what: str) -> ModuleType:
    """Import torch, or raise an error that names the extra to install.

    Parameters
    ----------
    what : str
        What needs torch, used in the message (for example ``"training an ivf_ae index"``).

    Returns
    -------
    module
        The ``torch`` module.

    Raises
    ------
    NotSupportedError
        torch is not installed (or cannot be imported); a ``NotImplementedError``. The
        import error is chained as ``__cause__``.
    """
    try:
        import torch
    except ImportError as e:
        raise NotSupportedError(
            f"{what} requires torch, which is not installed: {_TORCH_HINT} "
            "(the CPU build is enough)"
        ) from e
    return torch


# --------------------------------------------------------------------------- the compressor
def _normalize_rows(z: FloatMatrix) -> FloatMatrix:
    """L2-normalise rows in place (all-zero rows stay zero) and return ``z``."""
    norms = np.sqrt(np.einsum("ij,ij->i", z, z))
    norms[norms == 0] = 1
    z /= norms[:, None]
    return z


_LAYOUTS: dict[int, tuple[str, ...]] = {
    2: ("w0", "b0"),
    6: ("w0", "b0", "w1", "b1", "w2", "b2"),
}


@dataclass(frozen=True)
class Compressor:
    """Learned encoder from ``dim`` to ``compression_dim`` dimensions, numpy-only at inference.

    Build one with :func:`train_compressor` or :meth:`from_arrays`; encoding, saving and
    loading do not need torch.

    Attributes
    ----------
    weights : tuple of ndarray of float32
        The encoder's parameters: ``(W0 (d, c), b0 (c,))`` for the linear encoder, or
        ``(W0 (d, c), b0 (c,), W1 (d, h), b1 (h,), W2 (h, c), b2 (c,))`` for the residual MLP
        ``z = x @ W0 + b0 + relu(x @ W1 + b1) @ W2 + b2``.
    metric : {"cosine", "ip", "l2"}
        The metric the codes approximate. For ``"cosine"`` input rows are L2-normalised
        before encoding.
    normalize_output : bool
        L2-normalise each code (true for ``cosine`` and for the ``cell`` objective).
    objective : {"autoencoder", "cell"}
        How the encoder was trained (provenance only; encoding does not depend on it).
    """

    weights: tuple[npt.NDArray[np.float32], ...]
    metric: Metric = "cosine"
    normalize_output: bool = True
    objective: Objective = DEFAULT_OBJECTIVE

    def __post_init__(self) -> None:
        _check_weights(self.weights, InvalidArgumentError)

    @property
    def dim(self) -> int:
        """Input dimension ``d``."""
        return int(self.weights[0].shape[0])

    @property
    def compression_dim(self) -> int:
        """Output (code) dimension ``c``."""
        return int(self.weights[0].shape[1])

    @property
    def hidden_dim(self) -> int:
        """Width of the MLP's hidden layer, 0 for the linear encoder."""
        return int(self.weights[2].shape[1]) if len(self.weights) == 6 else 0

    def encode(self, x: object) -> FloatMatrix:
        """Encode vectors.

        Parameters
        ----------
        x : array_like or torch.Tensor, shape (n, dim) or (dim,)
            Vectors; a 1-D input is one row. ``n == 0`` is allowed.

        Returns
        -------
        ndarray of float32, shape (n, compression_dim), C-contiguous
            The codes. With ``normalize_output`` each row has unit norm (an all-zero row
            stays zero).

        Raises
        ------
        DimensionMismatchError
            ``x`` does not have ``dim`` columns.
        NonFiniteError, InvalidDtypeError, InvalidArgumentError
            As :func:`vecindex_core.validation.as_float_matrix`.
        """
        x = as_float_matrix(x, self.dim, name="x", allow_empty=True)
        if self.metric == "cosine":
            x = _normalize_rows(x.copy())
        w0, b0 = self.weights[0], self.weights[1]
        if len(self.weights) == 2:
            z = x @ w0
            z += b0
        else:
            w1, b1, w2, b2 = self.weights[2:]
            z = np.empty((x.shape[0], w0.shape[1]), dtype=np.float32)
            for start in range(0, x.shape[0], _ENCODE_CHUNK):
                xs = x[start:start + _ENCODE_CHUNK]
                h = xs @ w1
                h += b1
                np.maximum(h, 0, out=h)
                zs = xs @ w0
                zs += b0
                zs += h @ w2
                zs += b2
                z[start:start + xs.shape[0]] = zs
        if self.normalize_output:
            _normalize_rows(z)
        return np.ascontiguousarray(z, dtype=np.float32)

    def arrays(self) -> dict[str, npt.NDArray[np.float32]]:
        """The parameters as named plain arrays (``w0``, ``b0``, and for the MLP ``w1``...).

        Together with :meth:`meta` this is everything :meth:`from_arrays` needs; save the
        arrays with ``allow_pickle=False``.
        """
        names = _LAYOUTS[len(self.weights)]
        return {name: w for name, w in zip(names, self.weights, strict=True)}

    def meta(self) -> dict[str, Any]:
        """The plain (JSON-serialisable) fields, as keyword arguments of :meth:`from_arrays`."""
        return {
            "metric": self.metric,
            "normalize_output": self.normalize_output,
            "objective": self.objective,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], **meta: Any) -> Compressor:
        """Rebuild a compressor from :meth:`arrays` and :meth:`meta`.

        Parameters
        ----------
        arrays : mapping of str to ndarray
            ``w0``, ``b0`` (linear) or ``w0``, ``b0``, ``w1``, ``b1``, ``w2``, ``b2`` (MLP),
            float32 with consistent shapes and finite values. Arrays are copied.
        **meta
            ``metric``, ``normalize_output``, ``objective`` (each optional, with the
            dataclass defaults).

        Raises
        ------
        IndexFormatError
            A missing or unexpected array, a wrong dtype, rank or shape, a non-finite value,
            or bad metadata. (A ``ValueError``.)
        """
        keys = set(arrays)
        layout = next((names for names in _LAYOUTS.values() if set(names) == keys), None)
        if layout is None:
            expected = " or ".join(repr(sorted(n)) for n in _LAYOUTS.values())
            raise IndexFormatError(
                f"compressor arrays are {sorted(keys)}, expected {expected}"
            )
        unknown = set(meta) - {"metric", "normalize_output", "objective"}
        if unknown:
            raise IndexFormatError(
                f"unknown compressor metadata {sorted(unknown)}, expected metric, "
                "normalize_output, objective"
            )
        metric = meta.get("metric", "cosine")
        if metric not in METRICS:
            raise IndexFormatError(
                f"compressor metric is {metric!r}, expected one of {list(METRICS)}"
            )
        normalize = meta.get("normalize_output", True)
        if not isinstance(normalize, (bool, np.bool_)):
            raise IndexFormatError(
                f"compressor normalize_output is {normalize!r}, expected a bool"
            )
        objective = meta.get("objective", DEFAULT_OBJECTIVE)
        if objective not in OBJECTIVES:
            raise IndexFormatError(
                f"compressor objective is {objective!r}, expected one of {list(OBJECTIVES)}"
            )
        weights = []
        for name in layout:
            a = arrays[name]
            if not isinstance(a, np.ndarray) or a.dtype != np.float32:
                got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
                raise IndexFormatError(f"compressor array {name!r} has dtype {got}, "
                                       "expected float32")
            weights.append(np.array(a, dtype=np.float32, order="C", copy=True))
        _check_weights(tuple(weights), IndexFormatError)
        return cls(tuple(weights), metric=metric, normalize_output=bool(normalize),
                   objective=objective)


def _check_weights(weights: tuple[npt.NDArray[np.float32], ...],
                   error: type[Exception]) -> None:
    """Check the layout, dtypes, shapes and finiteness of encoder weights."""
    if not isinstance(weights, tuple) or len(weights) not in _LAYOUTS:
        raise error(f"compressor weights must be a tuple of 2 (linear) or 6 (MLP) arrays, "
                    f"got {type(weights).__name__} of length {len(weights)}")
    names = _LAYOUTS[len(weights)]
    for name, w in zip(names, weights, strict=True):
        if not isinstance(w, np.ndarray) or w.dtype != np.float32:
            raise error(f"compressor array {name!r} must be a float32 ndarray")
        want = 2 if name.startswith("w") else 1
        if w.ndim != want:
            raise error(f"compressor array {name!r} has shape {w.shape}, expected {want}-D")
        if w.size == 0:
            raise error(f"compressor array {name!r} has shape {w.shape}, which is empty")
        if not np.isfinite(w).all():
            raise error(f"compressor array {name!r} contains non-finite values")
    d, c = weights[0].shape
    shapes = {"w0": (d, c), "b0": (c,)}
    if len(weights) == 6:
        h = weights[2].shape[1]
        shapes.update({"w1": (d, h), "b1": (h,), "w2": (h, c), "b2": (c,)})
    for name, w in zip(names, weights, strict=True):
        if w.shape != shapes[name]:
            raise error(f"compressor array {name!r} has shape {w.shape}, expected "
                        f"{shapes[name]} (dim={d}, compression_dim={c})")
    if c >= d:
        raise error(f"compressor maps {d} dimensions to {c}: compression_dim must be < dim")


# --------------------------------------------------------------------------- validation


def _check_lr(lr: object) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise InvalidParameterError(f"lr must be a number, got {lr!r}")
    value = float(lr)
    if not (math.isfinite(value) and value > 0):
        raise InvalidParameterError(f"lr must be a finite number > 0, got {value}")
    return value


def _check_labels(labels: object, n: int, nlist: int | None) -> npt.NDArray[np.int64]:
    if is_torch_tensor(labels):
        labels = labels.detach().cpu().numpy()  # type: ignore[attr-defined]
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise InvalidDtypeError(f"labels must be integers, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise InvalidArgumentError(f"labels has shape {arr.shape}, expected ({n},) "
                                   "(one cell a row of x)")
    out = arr.astype(np.int64)
    high = nlist if nlist is not None else None
    if out.min() < 0 or (high is not None and out.max() >= high):
        bad = int(out.min()) if out.min() < 0 else int(out.max())
        limit = f"[0, {high})" if high is not None else ">= 0"
        raise InvalidArgumentError(f"labels contains {bad}, outside {limit}")
    return out


def _assign(x: FloatMatrix, centroids: FloatMatrix, metric: Metric) -> npt.NDArray[np.int64]:
    """Nearest centroid of each row under ``metric`` (x already normalised for cosine)."""
    if metric == "cosine":
        centroids = _normalize_rows(centroids.copy())
    out = np.empty(x.shape[0], dtype=np.int64)
    cn = np.einsum("ij,ij->i", centroids, centroids)
    for start in range(0, x.shape[0], 8192):
        s = x[start:start + 8192] @ centroids.T
        if metric == "l2":
            s = 2 * s - cn[None, :]
        out[start:start + s.shape[0]] = np.argmax(s, axis=1)
    return out


# --------------------------------------------------------------------------- training
@contextmanager
def _torch_state(torch: ModuleType, threads: int) -> Iterator[None]:
    """Use ``threads`` threads and deterministic algorithms; restore both afterwards."""
    old_threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(old_threads)


def _pca_init(x: FloatMatrix, c: int, centred: bool) -> tuple[FloatMatrix, FloatMatrix]:
    """Top-``c`` principal directions ``(W (d, c), b (c,))`` (b centres when ``centred``)."""
    d = x.shape[1]
    gram = np.zeros((d, d), dtype=np.float64)
    for start in range(0, x.shape[0], 16384):
        xs = x[start:start + 16384]
        gram += (xs.T @ xs).astype(np.float64)
    gram /= x.shape[0]
    mean = x.mean(axis=0, dtype=np.float64)
    if centred:
        gram -= np.outer(mean, mean)
    _, vecs = np.linalg.eigh(gram)
    w = vecs[:, ::-1][:, :c]
    w *= np.where(w[np.abs(w).argmax(axis=0), np.arange(c)] < 0, -1.0, 1.0)  # fixed signs
    b = -(mean @ w) if centred else np.zeros(c)
    return np.ascontiguousarray(w, dtype=np.float32), b.astype(np.float32)


def _uniform(torch: ModuleType, shape: tuple[int, ...], bound: float,
             gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def _encode_torch(torch: ModuleType, params: list[torch.Tensor], x: torch.Tensor,
                  normalize: bool) -> torch.Tensor:
    """The encoder's torch forward pass (``x`` already normalised for cosine)."""
    z = x @ params[0] + params[1]
    if len(params) == 6:
        z = z + torch.relu(x @ params[2] + params[3]) @ params[4] + params[5]
    if normalize:
        z = torch.nn.functional.normalize(z, dim=1)
    return z


def _similarity(torch: ModuleType, z: torch.Tensor, metric: Metric, scale: float) -> torch.Tensor:
    """Pairwise similarities of rows of ``z`` in units of ``scale`` (higher is closer)."""
    g = z @ z.T
    if metric == "l2":
        sq = torch.diagonal(g)
        g = (2 * g - sq[:, None] - sq[None, :]) * 0.5
    return g / scale


def train_compressor(
    x: object,
    compression_dim: int,
    *,
    objective: Objective = DEFAULT_OBJECTIVE,
    centroids: object | None = None,
    labels: object | None = None,
    metric: Metric = "cosine",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    hidden_dim: int = 0,
    autoencoder_loss: AutoencoderLoss = "similarity",
) -> Compressor:
    """Train a compressor from ``d`` to ``compression_dim`` dimensions (needs torch).

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, d)
        Training vectors, ``n >= 2``. For ``cosine`` they are L2-normalised here.
    compression_dim : int
        Code dimension ``c``, ``1 <= c < d``.
    objective : {"autoencoder", "cell"}
        What the codes are trained for (see the module docstring). ``"autoencoder"``, the
        default, measured better recall than ``"cell"`` at every setting tried.
    centroids : array_like, shape (nlist, d), optional
        k-means cells; with ``objective="cell"`` and no ``labels`` each row is assigned to
        its nearest centroid under ``metric``. Validated, then unused by ``"autoencoder"``.
    labels : array_like of int, shape (n,), optional
        Cell of each row of ``x``, in ``[0, nlist)`` (``nlist`` is ``len(centroids)`` when
        given, else ``labels.max() + 1``). ``objective="cell"`` needs ``labels`` or
        ``centroids``. Validated, then unused by ``"autoencoder"``.
    metric : {"cosine", "ip", "l2"}
        The metric the codes must preserve.
    epochs : int, optional
        Passes over ``x`` (the last partial batch of each pass is dropped). By default the
        training is a fixed number of optimizer steps whatever ``n``: 100 for
        ``autoencoder``, 1,500 for ``cell``, over successive shuffles of ``x``.
    batch_size : int, optional
        Rows a step (capped at ``n``): 1024 for ``autoencoder`` (each row is contrasted with
        the rest of its batch, so larger batches see closer neighbours), 256 for ``cell``.
        An autoencoder step costs ``O(batch_size * (batch_size + c) * d)``; the default
        training of 384 -> 96 took 4 s on one thread and 2.5 s on two (shared 2-core machine,
        whatever ``n``: only the PCA initialisation reads every row).
    lr : float, optional
        Adam's learning rate: 3e-3 for ``autoencoder``, 5e-3 (fast-ivf's) for ``cell``.
    seed : int
        Seed of every random step (initialisation, dropout, batch order).
    hidden_dim : int
        Width of a ReLU hidden layer added as a residual branch to the linear encoder;
        0 (the default) keeps the encoder linear.
    autoencoder_loss : {"similarity", "reconstruction", "gram"}
        Loss of the ``"autoencoder"`` objective: neighbourhood distillation (default),
        vector reconstruction through a linear decoder, or MSE between similarity matrices.

    Returns
    -------
    Compressor
        ``encode`` maps ``(n, d)`` to ``(n, compression_dim)`` float32.

    Raises
    ------
    NotSupportedError
        torch is not installed (the message names ``vecindex[torch]``).
    InvalidParameterError
        ``compression_dim`` outside ``[1, d)``, an unknown ``objective`` or
        ``autoencoder_loss``, or a bad ``epochs``, ``batch_size``, ``lr``, ``seed`` or
        ``hidden_dim``.
    InvalidArgumentError
        Unknown ``metric``; ``labels`` of the wrong shape or out of range; ``cell`` without
        ``labels`` or ``centroids``; centroids of the wrong dimension.
    EmptyInputError
        Fewer than 2 rows.
    NonFiniteError, InvalidDtypeError, DimensionMismatchError
        As :func:`vecindex_core.validation.as_float_matrix`.
    """
    # ---- validate everything before importing torch or doing any work
    if objective not in OBJECTIVES:
        raise InvalidParameterError(
            f"unknown objective {objective!r}, expected one of {', '.join(map(repr, OBJECTIVES))}"
        )
    if autoencoder_loss not in AUTOENCODER_LOSSES:
        raise InvalidParameterError(
            f"unknown autoencoder_loss {autoencoder_loss!r}, expected one of "
            f"{', '.join(map(repr, AUTOENCODER_LOSSES))}"
        )
    metric = check_metric(metric)
    xm = as_float_matrix(x, name="x")
    n, d = xm.shape
    if n < 2:
        raise EmptyInputError(f"x has {n} row, a compressor needs at least 2 to train")
    if d < 2:
        raise InvalidArgumentError(f"x has {d} dimension; nothing to compress")
    c = check_int(compression_dim, "compression_dim", 1, d - 1)
    default_steps, default_bs, default_lr = _DEFAULTS[objective]
    n_epochs = None if epochs is None else check_int(epochs, "epochs", 1)
    bs = check_int(default_bs if batch_size is None else batch_size, "batch_size", 1)
    rate = _check_lr(default_lr if lr is None else lr)
    seed = check_int(seed, "seed", 0, 2**63 - 1)
    hidden = check_int(hidden_dim, "hidden_dim", 0)
    if metric == "cosine":
        xm = _normalize_rows(xm.copy())
    cen = None if centroids is None else as_float_matrix(centroids, d, name="centroids")
    lab = None
    if labels is not None:
        lab = _check_labels(labels, n, None if cen is None else cen.shape[0])
    if objective == "cell" and lab is None:
        if cen is None:
            raise InvalidArgumentError(
                "objective='cell' needs the k-means cells: pass labels (n,) or "
                "centroids (nlist, d)"
            )
        lab = _assign(xm, cen, metric)
    torch = require_torch("training a learned compressor (ivf_ae)")

    # one BLAS thread: the PCA then does not depend on the thread count, and LAPACK's eigh on
    # a shared machine is 50x slower with threads competing for the cores (measured)
    with one_blas_thread():
        w0, b0 = _pca_init(xm, c, centred=metric == "l2")
    normalize = metric == "cosine" or objective == "cell"
    if metric == "l2":
        scale = float(np.mean(np.einsum("ij,ij->i", xm, xm)) - np.sum(xm.mean(0) ** 2))
    else:
        scale = float(np.mean(np.einsum("ij,ij->i", xm, xm)))
    scale = scale if scale > 0 else 1.0

    # One torch thread: the steps are small (a batch of at most 1024 x d), so threads only
    # add a barrier per op, and that barrier costs 10-100x when another pool (OpenBLAS,
    # numba, a second process) holds the cores (measured: 200 rows took 0.5-28 s with two
    # threads and a busy neighbour). On an idle machine two threads saved 40% at 20,000 rows.
    threads = 1
    with _torch_state(torch, threads):
        gen = torch.Generator().manual_seed(seed)
        params = [torch.from_numpy(w0.copy()), torch.from_numpy(b0.copy())]
        if hidden:
            params += [_uniform(torch, (d, hidden), 1 / math.sqrt(d), gen),
                       _uniform(torch, (hidden,), 1 / math.sqrt(d), gen),
                       torch.zeros(hidden, c), torch.zeros(c)]  # the branch starts at 0
        extra: list[Any] = []
        if objective == "cell":
            nlist = int(cen.shape[0]) if cen is not None else int(lab.max()) + 1  # type: ignore[union-attr]
            bound = 1 / math.sqrt(c)
            extra = [_uniform(torch, (c, nlist), bound, gen), _uniform(torch, (nlist,), bound, gen)]
        elif autoencoder_loss == "reconstruction":
            # starts as PCA's decoder: x ~ z @ W0.T (+ the mean for the centred l2 init)
            mean = xm.mean(axis=0) if metric == "l2" else np.zeros(d, np.float32)
            extra = [torch.from_numpy(np.ascontiguousarray(w0.T)),
                     torch.from_numpy(mean.astype(np.float32))]
        for p in params + extra:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params + extra, lr=rate)
        xt = torch.from_numpy(xm if xm.flags.writeable else xm.copy())
        labt = torch.from_numpy(lab) if objective == "cell" else None
        bs = min(bs, n)
        per_pass = max(1, n // bs)  # the last partial batch of a pass is dropped
        total = default_steps if n_epochs is None else n_epochs * per_pass
        eye = torch.eye(bs) * 1e4  # masks each row's own pair out of the softmax
        off = 1 - torch.eye(bs)
        fn = torch.nn.functional
        for step in range(total):
            if step % per_pass == 0:
                perm = torch.randperm(n, generator=gen)
            idx = perm[(step % per_pass) * bs:(step % per_pass + 1) * bs]
            a = xt[idx]
            if objective == "cell":
                keep = torch.rand(a.shape, generator=gen) >= _CELL_DROPOUT
                a = a * keep / (1 - _CELL_DROPOUT)
                z = _encode_torch(torch, params, a, normalize=False)
                logits = torch.relu(z) @ extra[0] + extra[1]
                loss = fn.cross_entropy(logits, labt[idx],  # type: ignore[index]
                                        label_smoothing=_CELL_LABEL_SMOOTHING)
            elif autoencoder_loss == "reconstruction":
                z = _encode_torch(torch, params, a, normalize)
                loss = fn.mse_loss(z @ extra[0] + extra[1], a) / scale
            else:
                z = _encode_torch(torch, params, a, normalize)
                s = _similarity(torch, z, metric, scale)
                with torch.no_grad():
                    t = _similarity(torch, a, metric, scale)
                if autoencoder_loss == "gram":
                    loss = (((s - t) * off) ** 2).sum() / (bs * max(bs - 1, 1))
                else:
                    lt = fn.log_softmax(t / _TEMPERATURE - eye, dim=1)
                    ls = fn.log_softmax(s / _TEMPERATURE - eye, dim=1)
                    loss = fn.kl_div(ls, lt, log_target=True, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        weights = tuple(np.ascontiguousarray(p.detach().numpy(), dtype=np.float32).copy()
                        for p in params)
    return Compressor(weights, metric=metric, normalize_output=normalize, objective=objective)


def _torch_encode(compressor: Compressor, x: object) -> FloatMatrix:
    """Encode with torch from the compressor's weights (the training forward pass; tests)."""
    torch = require_torch("_torch_encode")
    xm = as_float_matrix(x, compressor.dim, name="x")
    if compressor.metric == "cosine":
        xm = _normalize_rows(xm.copy())
    params = [torch.from_numpy(w) for w in compressor.weights]
    with torch.no_grad():
        z = _encode_torch(torch, params, torch.from_numpy(xm), compressor.normalize_output)
    return np.ascontiguousarray(z.numpy(), dtype=np.float32)
