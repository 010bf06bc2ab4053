"""Every registered optimizer against the ``Optimizer`` contract.

The entries come from the registry itself, so a new registration is covered without editing this file
(a prefix family such as ``ng:NAME`` is tested through one member). Each check runs on a bounded space
and on a categorical one; an optimizer that cannot search a space must refuse it at construction with a
one-line ``MangoError`` (then its checks run on the other space only). Budgets are a few small rounds: the
whole module runs in seconds.
"""
from __future__ import annotations

import json
import threading

import pytest
import torch
from torch import nn

from mango.errors import MangoError
from mango.generators.base import TorchGenerator
from mango.generators.space import LatentSpace
from mango.optimizers import OPTIMIZERS, Optimizer
from mango.optimizers.options import option_hints

REPRESENTATIVE = {"ng:NAME": "ng:DE"}  # prefix family -> the member tested for it
NAMES = [REPRESENTATIVE.get(name, name) for name in OPTIMIZERS]
SPACES = {"bounded": LatentSpace(6, 16, (-4.0, 4.0)), "categorical": LatentSpace(6, 16)}
WRONG = {bool: "maybe", int: 1.5, float: "x", str: 3}  # a wrongly typed value per option type


@pytest.fixture
def space(request) -> LatentSpace:
    return SPACES[request.param]


#: a method that searches through the generator gets this one (8x8 images of the bounded space's 6 numbers)
TINY = TorchGenerator(nn.Sequential(nn.Linear(6, 64), nn.Unflatten(1, (1, 8, 8))), SPACES["bounded"], (1, 8, 8))
#: settings that reach a method's later phase within these few rounds (image-model, -noisy: its model, after 4 images;
#: image-model-sepstart and -sepcma: after 8 of sep-CMA-ES's)
QUICK = {"image-model": {"init": 4, "steps": 2, "ascent": 2},
         "image-model-noisy": {"init": 4, "steps": 2, "ascent": 2},
         "image-model-sepstart": {"init": 8, "steps": 2, "ascent": 2},
         "image-model-sepcma": {"init": 8, "steps": 2, "ascent": 2}}


def make(name: str, space: LatentSpace, seed: int = 0, /, **options):
    return OPTIMIZERS.create(name, space, seed=seed, generator=TINY, **{**QUICK.get(name, {}), **options})


def refusal(name: str, key: str) -> str | None:
    """The one-line error with which ``name`` refuses space ``key`` at construction, or None if it searches it."""
    try:
        make(name, SPACES[key]).close()
    except MangoError as exc:
        return str(exc)
    return None


#: (optimizer, space) pairs each contract test runs on: every space an optimizer does not refuse
PAIRS = [(name, key) for name in NAMES for key in SPACES if refusal(name, key) is None]


@pytest.mark.parametrize("name, key", [(n, k) for n in NAMES for k in SPACES if (n, k) not in PAIRS])
def test_a_space_the_method_cannot_search_is_refused_in_one_line(name, key):
    """image-model, which ascends through the generator, refuses the categorical codes."""
    assert "\n" not in (refusal(name, key) or "")
    with pytest.raises(MangoError, match="categorical"):
        make(name, SPACES[key])


def test_every_method_searches_a_bounded_space():
    assert {name for name, key in PAIRS if key == "bounded"} == set(NAMES)


def valid(z: torch.Tensor, k: int, space: LatentSpace) -> torch.Tensor:
    """Assert ``z`` is ``k`` proper candidates: int64 indices in [0, size), or float64 points in the bounds."""
    assert isinstance(z, torch.Tensor) and z.shape == (k, space.dim)
    if z.dtype == torch.int64:
        assert k == 0 or (int(z.min()) >= 0 and int(z.max()) < space.size)
    else:
        assert z.dtype == torch.float64 and space.bounds is not None
        assert bool(((z >= space.bounds[0]) & (z <= space.bounds[1])).all())
    return z


def objective(z: torch.Tensor) -> torch.Tensor:
    """A smooth function of the candidates (indices or points alike): the same asks get the same values."""
    return -((z.double() - 3.0) ** 2).sum(1)


def drive(opt, space: LatentSpace, batches, failed=()) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Ask/tell rounds; a batch ``(7, 3)`` is asked as 7 and told as 3 + 4. ``failed``: values to plant
    (round, index, value). Returns the asks, the values told and the size of the first tell."""
    rounds = []
    for r, batch in enumerate(batches):
        k, first = batch if isinstance(batch, tuple) else (batch, batch)
        z = valid(opt.ask(k), k, space)
        v = objective(z)
        for rr, i, value in failed:
            if rr == r:
                v[i] = value
        opt.tell(z[:first], v[:first])
        if first < k:
            opt.tell(z[first:], v[first:].tolist())  # lists work as well as tensors
        rounds.append((z, v, first))
    return rounds


@pytest.mark.parametrize("name, space", PAIRS, indirect=["space"])
def test_deterministic_and_resume_is_exact(name, space):
    """Same seed: same asks; a fresh optimizer replaying the asks and tells (as the loop's resume does:
    ask k, check, tell the recorded values) continues exactly like the original; another seed asks otherwise."""
    a = make(name, space, 0)
    recorded = drive(a, space, [5, (7, 3), 2])
    b = make(name, space, 0)
    for z, v, first in recorded:
        assert torch.equal(b.ask(len(z)), z)
        b.tell(z[:first], v[:first])
        if first < len(z):
            b.tell(z[first:], v[first:])
    assert torch.equal(a.ask(6), b.ask(6))
    other = make(name, space, 1)
    assert any(not torch.equal(r[0], o[0]) for r, o in zip(recorded, drive(other, space, [5, (7, 3), 2]), strict=True))
    for opt in (a, b, other):
        opt.close()


@pytest.mark.parametrize("name, space", PAIRS, indirect=["space"])
def test_batch_sizes(name, space):
    opt = make(name, space)
    drive(opt, space, [1, 2, (7, 3), 10, 64])
    valid(opt.ask(3), 3, space)
    assert valid(opt.ask(0), 0, space).shape == (0, space.dim)
    opt.close()


@pytest.mark.parametrize("name, space", PAIRS, indirect=["space"])
def test_failed_measurements(name, space):
    """NaN, +inf and -inf reach the method as -inf (worst); whole failed batches; asks stay valid."""
    opt = make(name, space)
    seen = []
    method_tell = opt._tell
    opt._tell = lambda z, v: (seen.append(v.clone()), method_tell(z, v))
    nan, inf = float("nan"), float("inf")
    drive(opt, space, [6, 6, 6, 6], failed=[(1, 0, inf), (1, 2, nan), (1, 4, -inf)]
          + [(r, i, v) for r in (2, 3) for i, v in enumerate([-inf, nan, inf, -inf, -inf, nan])])
    valid(opt.ask(6), 6, space)
    assert all(len(v) == 6 and not v.isnan().any() and not (v == inf).any() for v in seen)
    assert torch.isinf(seen[1][[0, 2, 4]]).all() and torch.isfinite(seen[1][[1, 3, 5]]).all()
    assert (seen[2] == -inf).all() and (seen[3] == -inf).all()
    opt.close()


@pytest.mark.parametrize("name, space", PAIRS, indirect=["space"])
def test_wrong_calls_are_one_line_errors(name, space):
    opt = make(name, space)
    z = opt.ask(3)
    for call, match in [(lambda: opt.tell(z, torch.zeros(2)), "2 values for 3 candidates"),
                        (lambda: opt.ask(-1), "k=-1"), (lambda: opt.ask(1.5), "k=1.5"),
                        (lambda: opt.ask(True), "k=True"), (lambda: opt.tell(z, ["a", "b", "c"]), "numeric values")]:
        with pytest.raises(MangoError, match=match) as exc:
            call()
        assert "\n" not in str(exc.value)
    opt.tell(z, objective(z).numpy())  # numpy values work too
    with pytest.raises(MangoError, match="only 0 asked candidates"):
        opt.tell(z, objective(z))
    opt.close()
    for seed in (1.5, True, "0", -1):
        with pytest.raises(MangoError, match="seed must be"):
            OPTIMIZERS.create(name, space, seed=seed)


@pytest.mark.parametrize("name", NAMES)
def test_options_are_checked(name):
    """Every option refuses a value of the wrong type, unknown names are refused listing the allowed ones."""
    preset = OPTIMIZERS.get(name)
    preset = getattr(preset, "func", preset)  # a prefix family comes as partial(preset, suffix)
    space = SPACES["bounded"]
    hints = option_hints(preset.cls)
    for option in preset.options():
        hint = hints[option]
        base = next((t for t in WRONG if t is hint or t in getattr(hint, "__args__", ())), None)
        bad = WRONG[base] if base is not None else object()
        with pytest.raises(MangoError, match=f"bad option {option}=.* for optimizer '{name}': expected") as exc:
            OPTIMIZERS.create(name, space, **{option: bad})
        assert "\n" not in str(exc.value)
    with pytest.raises(MangoError, match=f"unknown option 'nope' for optimizer '{name}'; allowed: ") as exc:
        OPTIMIZERS.create(name, space, nope=1)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name, space", PAIRS, indirect=["space"])
def test_describe_and_hyperparameters_rebuild_the_optimizer(name, space):
    opt = make(name, space, 2)
    described = json.loads(json.dumps(opt.describe()))
    assert {"class", "space", "preferred_batch"} <= set(described) and described["class"] == type(opt).__name__
    preset = OPTIMIZERS.get(name)
    allowed = getattr(preset, "func", preset).options()
    same = make(name, space, 2, **{k: v for k, v in opt.hyperparameters().items() if k in allowed})
    assert set(opt.hyperparameters()) <= set(option_hints(type(opt)))
    for batch in (4, 4):
        z = opt.ask(batch)
        assert torch.equal(z, same.ask(batch))
        opt.tell(z, objective(z))
        same.tell(z, objective(z))
    opt.close()
    same.close()


@pytest.mark.parametrize("name, space", PAIRS, indirect=["space"])
def test_close_is_idempotent_and_leaves_no_threads(name, space):
    before = set(threading.enumerate())
    with make(name, space) as opt:
        z = opt.ask(4)
        opt.tell(z[:2], objective(z[:2]))  # stopped mid-batch: a worker may be waiting for values
    opt.close()
    with pytest.raises(MangoError, match="closed"):
        opt.ask(1)
    left = [t for t in threading.enumerate() if t not in before and not t.daemon]
    assert not left, left


class Broken(Optimizer):
    """Asks whatever it is given: the base must catch it."""

    def __init__(self, space: LatentSpace, out: torch.Tensor) -> None:
        super().__init__(space)
        self.out, self.asked = out, 0

    def _ask(self, k: int) -> torch.Tensor:
        self.asked += 1
        return self.out

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        pass


@pytest.mark.parametrize("out, problem", [(torch.zeros(2, 6, dtype=torch.long), "shape"),
                                          (torch.full((3, 6), 16), r"indices in \[16, 16\]"),
                                          (torch.full((3, 6), 4.5, dtype=torch.float64), "outside the bounds"),
                                          (torch.zeros(3, 6), "dtype torch.float32")])
def test_the_base_catches_a_broken_method(out, problem):
    opt = Broken(SPACES["bounded"], out)
    with pytest.raises(RuntimeError, match=f"optimizer Broken asked .*{problem}"):
        opt.ask(3)
    assert opt.ask(0).shape == (0, 6) and opt.asked == 1  # k = 0 never reaches the method
    with pytest.raises(RuntimeError, match="float64 points for a categorical space"):
        Broken(SPACES["categorical"], torch.zeros(3, 6, dtype=torch.float64)).ask(3)
    with pytest.raises(TypeError, match="implement _ask"):
        type("Overrides", (Broken,), {"ask": lambda self, k: None})


@pytest.mark.parametrize("name", NAMES)
def test_left_out_candidates_are_not_told_as_values(name):
    """A candidate never measured (a rig that gave no answer) is told as missing: the method goes on, stays
    deterministic, and behaves as if that candidate had never been proposed (never as its best)."""
    space = LatentSpace(6, 16, (-4.0, 4.0))

    def run(seed):
        opt, asked = make(name, space, seed), []
        for r in range(4):
            z = opt.ask(7)
            asked.append(z)
            values = torch.linspace(0, 1, 7, dtype=torch.float64) + r
            opt.tell(z, values, missing=[i % 3 == 0 for i in range(7)])
        opt.close()
        return torch.cat(asked)

    a = run(0)
    assert torch.equal(a, run(0))
    space.check(a)


@pytest.mark.parametrize("name, space", PAIRS, indirect=["space"])
def test_inject_is_deterministic_and_only_between_batches(name, space):
    """Foreign candidates (a shared scan's images proposed for other units): injecting the same ones into two
    optimizers of one seed keeps their asks equal; an injection while asked candidates await values is refused;
    NaN values are dropped; a method that declares it learns from others asks differently after a better point."""
    a, b, c = make(name, space, 0), make(name, space, 0), make(name, space, 0)
    foreign = valid(make(name, space, 99).ask(8), 8, space)
    values = objective(foreign) + 1e3  # far better than anything the optimizers have seen
    values[0] = float("nan")
    for opt in (a, b, c):
        drive(opt, space, [opt.preferred_batch])
    for opt in (a, b):
        opt.inject(foreign, values)
    k = a.preferred_batch
    # both next batches: a method may learn in one and not the other (image-model-sepcma's sep-CMA-ES batch)
    za, zb, zc = [torch.cat([r[0] for r in drive(o, space, [k, k])]) for o in (a, b, c)]
    assert torch.equal(za, zb)
    if a.learns_from_others:
        assert not torch.equal(za, zc)
    a.ask(1)
    with pytest.raises(MangoError, match="tell them first"):
        a.inject(foreign, values)
    for opt in (a, b, c):
        opt.close()
