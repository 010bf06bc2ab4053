"""One way for optimizers to run their own small linear algebra single-threaded.

Optimizer tensors are tiny (r x r cores, d x d covariances): intra-op threads
cost more than they give, and on a busy 2-core CPU every parallel region can
stall for a scheduler slice (measured: PROTES 10x, cmaes 35x, ttopt 5x
slower with two threads). One thread also fixes the floating-point order, so
replayed candidates stay bit-identical. The limits are process-wide, so they
are held only inside ``Optimizer.ask``/``tell`` (the base class pins them around
every method's ``_ask``/``_tell``): the generator and the target keep their threads.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_CONTROLLER = None


def _controller():
    """threadpoolctl's view of the loaded BLAS libraries, built once (listing them is the slow part)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        with contextlib.suppress(ImportError):  # load scipy's BLAS (used by ttopt) before listing libraries
            import scipy.linalg  # noqa: F401
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch intra-op threads and BLAS threads limited to one, restored on exit."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(n)
