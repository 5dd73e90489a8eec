"""The tensor engine: batched arrays and shared convolution kernels (numpy/scipy or torch).

Spike-identical to the Brian2 engine and the reference simulator on every
network both can run; see :mod:`.engine`.
"""

from .engine import TensorProgram, estimate_tensor_memory

__all__ = ["TensorProgram", "estimate_tensor_memory"]
