"""Kernels: numba/numpy functions over plain arrays. No classes, no I/O."""
