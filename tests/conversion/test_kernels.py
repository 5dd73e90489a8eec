"""Shared kernels: the explicit synapses they stand for, counted and applied without making them."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.snn.kernels import SharedKernel
from spikebridge.errors import ValidationError


@pytest.mark.parametrize(
    ("o", "c", "k", "stride", "pad", "groups", "hw"),
    [(4, 3, 3, 1, 1, 1, 7), (5, 2, 5, 2, 2, 1, 9), (3, 3, 2, 2, 0, 3, 8), (3, 3, 3, 2, 1, 3, 7), (2, 3, 3, 3, 0, 1, 10)],
)
def test_kernel_counts_and_applies_like_its_explicit_synapses(rng, o, c, k, stride, pad, groups, hw):
    kernel = rng.normal(size=(o, 1 if groups > 1 else c, k, k))
    kernel[kernel < -1] = 0.0  # some zero weights: they make no synapse
    op = SharedKernel(kernel, (c, hw, hw), (stride, stride), (pad, pad), groups)
    m = op.csr()
    assert m.shape == (op.n_post, op.n_pre)
    assert op.n_synapses == (m != 0).sum() == op.coo()[0].size
    np.testing.assert_array_equal(op.fan_out(), np.asarray((m != 0).sum(axis=0)).ravel())
    x = rng.normal(size=(3, op.n_pre))
    np.testing.assert_allclose(op.apply(x), (m @ x.T).T, rtol=1e-12, atol=1e-12)
    pre, post, w = op.coo()
    # post (o, y, x) <- pre (c, y*s - p + i, x*s - p + j) with weight kernel[o, c, i, j] (groups=1)
    if groups == 1:
        oh, ow = op.out_hw
        for q in range(0, pre.size, max(1, pre.size // 25)):
            oo, rem = divmod(int(post[q]), oh * ow)
            y, xx = divmod(rem, ow)
            cc, rem = divmod(int(pre[q]), hw * hw)
            r, col = divmod(rem, hw)
            i, j = r - y * stride + pad, col - xx * stride + pad
            assert w[q] == kernel[oo, cc, i, j]


def test_bad_kernels_are_refused():
    with pytest.raises(ValidationError, match="does not fit"):
        SharedKernel(np.ones((2, 3, 3, 3)), (2, 5, 5))
    with pytest.raises(ValidationError, match="does not fit"):
        SharedKernel(np.ones((2, 2, 7, 7)), (2, 5, 5))
    with pytest.raises(ValidationError, match="NaN"):
        SharedKernel(np.full((1, 1, 1, 1), np.nan), (1, 2, 2))
