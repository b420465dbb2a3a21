"""The numba loops of dff_core.cpu_kernels against the torch ops they replace: the same bits, the same counts,
the same special cases (values beyond exp's range, NaN, vanishing rows), and training unchanged by them."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dff_core import cpu_kernels
from dff_core.train.losses import full_softmax_loss

pytestmark = pytest.mark.skipif(not cpu_kernels.usable(), reason="numba's omp layer does not load here")


def _torch_exp(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What ChunkedLogSumExp did before: float32 copy, exp, sum, bfloat16 copy."""
    e = z.float().exp()
    return e.to(torch.bfloat16), e.sum(dim=1)


def test_exp_rows_equals_torch_bit_for_bit_across_exps_range():
    torch.manual_seed(0)
    z = (torch.randn(37, 1001) * 20).clamp(-86.9, 87.9).to(torch.bfloat16)   # many binades, odd sizes
    z[3, :50] = -86.5                                                         # close to the low end
    want_e, want_s = _torch_exp(z)
    got = z.clone()
    sums = cpu_kernels.exp_rows_(got)
    assert torch.equal(got.view(torch.int16), want_e.view(torch.int16))      # every exponential, bit for bit
    rel = ((sums.double() - want_s.double()) / want_s.double()).abs().max()
    assert float(rel) < 1e-5 and sums.dtype == torch.float32 and sums.shape == (37,)


def test_exp_rows_special_values_leave_the_range_check_to_the_caller():
    z = torch.zeros(4, 64, dtype=torch.bfloat16)
    z[0, 5] = float("nan")                                    # NaN: the sum is NaN
    z[1, 9] = 100.0                                           # beyond exp's float32 range: a huge sum
    z[2] = -100.0                                             # every entry vanishes: the sum is exactly 0
    z[3, :32] = -100.0                                        # some vanish: exactly 0 each, the rest exp(0) = 1
    sums = cpu_kernels.exp_rows_(z)
    assert torch.isnan(sums[0]) and float(sums[1]) > 1e38 and float(sums[2]) == 0.0 and float(sums[3]) == 32.0
    assert float(z[3, :32].float().abs().max()) == 0.0 and float(z[3, 32:].float().min()) == 1.0


def test_exp_rows_refuses_what_it_cannot_take():
    with pytest.raises(ValueError, match="contiguous CPU bfloat16"):
        cpu_kernels.exp_rows_(torch.zeros(4, 6))
    with pytest.raises(ValueError, match="contiguous CPU bfloat16"):
        cpu_kernels.exp_rows_(torch.zeros(4, 6, dtype=torch.bfloat16).T)


def test_count_at_least_equals_torch_with_ties_and_infinities():
    rng = np.random.default_rng(3)
    scores = torch.from_numpy(rng.integers(-3, 4, size=(61, 777)).astype(np.float32))
    scores[5, :10] = float("-inf")
    t = scores[torch.arange(61), torch.from_numpy(rng.integers(0, 777, size=61))]
    counts, sums = cpu_kernels.count_at_least(scores, t)
    assert torch.equal(counts, (scores >= t[:, None]).sum(dim=1))
    assert torch.isinf(sums[5]) and torch.equal(sums[:5], scores[:5].sum(dim=1))   # small integers: exact sums


@pytest.mark.parametrize("threads", [1, 2])
def test_full_softmax_with_the_kernel_equals_torch_ops_in_value_and_gradients(threads, monkeypatch):
    torch.manual_seed(2)
    P, N, d = 600, 1500, 16
    h0, t0 = torch.randn(P, d), torch.randn(N + 1, d)
    h0[:100] *= 12                                            # one block's logits leave exp's range: redone
    tg = torch.randint(1, N + 1, (P,))
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = {}
        loops = cpu_kernels._loops
        for kernel in (True, False):
            monkeypatch.setattr(cpu_kernels, "_loops", loops if kernel else False)
            h, table = h0.clone().requires_grad_(), t0.clone().requires_grad_()
            loss = full_softmax_loss(h, tg, table, torch.bfloat16, chunk=128)
            loss.backward()
            out[kernel] = (float(loss.detach()), h.grad, table.grad)
    finally:
        torch.set_num_threads(prev)
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-6)
    for got, want in zip(out[True][1:], out[False][1:]):
        assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())
    ref = F.cross_entropy(h0 @ t0[1:].T, tg - 1)
    assert out[True][0] == pytest.approx(float(ref), rel=2e-2)


def test_loading_the_loops_leaves_torchs_thread_count_alone():
    # numba's omp layer starting up reset torch's OpenMP threads to the machine's: a 1-thread run then ran on all
    # cores from its first validation on, and two identical runs differed in the last bits
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1); from dff_core import cpu_kernels; "
            "ok = cpu_kernels.usable(); cpu_kernels.exp_rows_(torch.zeros(8, 64, dtype=torch.bfloat16)); "
            "print(ok, torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "1"]
