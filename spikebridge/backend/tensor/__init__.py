"""The tensor engine: batched arrays and shared convolution kernels (numpy/scipy or torch).

Spike-identical to the Brian2 engine and the reference simulator on every
network both can run; see :mod:`.engine`.
"""

from .engine import TensorProgram, estimate_tensor_memory, iter_simulate_tensor, simulate_tensor

__all__ = ["TensorProgram", "iter_simulate_tensor", "simulate_tensor", "estimate_tensor_memory"]
