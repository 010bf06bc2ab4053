"""The ``codes`` optimizer ((1+lambda) EA over categorical codes): it beats random search on a categorical
latent, is deterministic, and adopts a better foreign candidate (inject) as its parent.

The categorical generator is a small one made in conftest (``patches``, no release files): MNIST-sized images
from a 7x7 grid of codes, each code one of 32 fixed random 4x4 binary patches (code 0 blank), the VQ-VAE's
structure in miniature; the target is the embedded mnist-snn's default unit.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mango
from mango import MangoError
from mango.optimizers import OPTIMIZERS
from mango.optimizers.discrete import CodeSearch

TARGET = "lif2:12"  # RunConfig's default unit


def test_registered_with_a_description():
    assert "codes" in OPTIMIZERS
    doc = OPTIMIZERS.describe()["codes"]
    assert "prototype" not in doc.lower() and "categorical codes" in doc


def test_the_default_optimizer_is_chosen_by_the_kind_of_latent(tmp_path, patches):
    """``optimizer=auto`` (the default): codes for a categorical latent, image-model-sepcma for a continuous one;
    the run records the method chosen (config, result, the store's events), and resumes with it."""
    from mango.experiment.store import RunStore

    cat = mango.run(generator=patches, target=TARGET, budget=40, out=tmp_path / "cat", progress=False)
    box = mango.run(target=TARGET, budget=40, out=tmp_path / "box", progress=False)
    assert cat.config.optimizer == "codes" and box.config.optimizer == "image-model-sepcma"
    with RunStore.read(tmp_path / "cat") as store:
        assert "optimizer codes (auto: the latent is categorical (49 codes of 32)" in " ".join(store.events()["text"])
    longer = mango.run(generator=patches, target=TARGET, budget=80, out=tmp_path / "cat", resume=True,
                       progress=False)
    alone = mango.run(generator=patches, target=TARGET, optimizer="codes", budget=80, out=tmp_path / "codes",
                      progress=False)
    assert longer.config.optimizer == "codes"
    assert longer.history["response"].tolist() == alone.history["response"].tolist()


@pytest.mark.parametrize("method", ["codes", "codes-noisy"])
def test_beats_random_search_at_equal_budget(tmp_path, patches, method):
    """Same budget, batch and seeds: every codes run ends above every random run (measured: codes 0.42-0.91,
    random 0.19-0.25 over seeds 0-3)."""
    best = {}
    for opt in (method, "random"):
        best[opt] = [mango.run(generator=patches, target=TARGET, optimizer=opt, budget=300, batch=10, seed=seed,
                               out=tmp_path / f"{opt}{seed}", progress=False).best_response for seed in range(3)]
    assert min(best[method]) > max(best["random"]), best


def asks(opt: CodeSearch, rounds: int, k: int, value) -> list[torch.Tensor]:
    out = []
    for _ in range(rounds):
        z = opt.ask(k)
        opt.tell(z, value(z))
        out.append(z)
    return out


def score(z: torch.Tensor) -> torch.Tensor:
    return -((z.double() - 5) ** 2).sum(1)


def test_deterministic_given_seed(patches):
    space = patches.space
    a, b, c = (OPTIMIZERS.create("codes", space, seed=s) for s in (0, 0, 1))
    za, zb, zc = (torch.cat(asks(o, 6, 4, score)) for o in (a, b, c))
    assert torch.equal(za, zb) and not torch.equal(za, zc)
    assert za.dtype == torch.int64 and int(za.min()) >= 0 and int(za.max()) < space.size
    assert len({tuple(r) for r in za.tolist()}) == len(za)  # no candidate asked twice


def test_flat_start_then_mutations_of_the_best(patches):
    opt = CodeSearch(patches.space, seed=2, start=4)
    start = opt.ask(4)
    assert all(len(set(r)) == 1 for r in start.tolist())  # flat images, one code each
    assert len({r[0] for r in start.tolist()}) == 4
    values = torch.tensor([0.1, 0.7, 0.3, 0.2], dtype=torch.float64)
    opt.tell(start, values)
    children = opt.ask(20)
    parent = start[1]
    changed = (children != parent).sum(1)
    assert bool((changed > 0).all())  # each a new candidate
    assert float(changed.double().median()) < patches.space.dim / 2  # mostly local changes of the parent
    # most children keep the parent's code in most cells
    assert float((children == parent).double().mean()) > 0.5


def test_injected_better_candidate_becomes_the_parent(patches):
    space = patches.space
    opt, twin = CodeSearch(space, seed=0, start=2), CodeSearch(space, seed=0, start=2)
    for o in (opt, twin):
        asks(o, 3, 2, lambda z: torch.zeros(len(z), dtype=torch.float64))  # own parent: value 0
    g = torch.Generator().manual_seed(5)
    foreign = torch.randint(0, space.size, (3, space.dim), generator=g)
    opt.inject(foreign, torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64))
    twin.inject(foreign, torch.tensor([-1.0, -0.5, -2.0], dtype=torch.float64))  # worse: ignored
    children = opt.ask(30)
    near = (children == foreign[1]).double().mean(1)  # share of the best foreign candidate's cells kept
    assert float(near.median()) > 0.5 and float(near.min()) < 1.0
    assert float((children == foreign[0]).double().mean()) < 0.2  # not the other foreign ones
    assert not any(torch.equal(c, f) for c in children for f in foreign)  # foreign ones count as seen
    # a worse foreign candidate changes nothing: the twin asks what an optimizer without the injection asks
    plain = CodeSearch(space, seed=0, start=2)
    asks(plain, 3, 2, lambda z: torch.zeros(len(z), dtype=torch.float64))
    assert torch.equal(twin.ask(30), plain.ask(30))
    assert opt.learns_from_others
    # the parent's value is the injected one: own candidates below it do not replace it
    opt.tell(children, torch.full((30,), 1.5, dtype=torch.float64))
    assert float((opt.ask(30) == foreign[1]).double().mean(1).median()) > 0.5


def test_inject_before_any_tell_seeds_the_parent(patches):
    opt = CodeSearch(patches.space, seed=1, start=1)
    first = opt.ask(1)
    opt.tell(first, [0.0], missing=[True])  # never measured: no parent yet
    assert opt.parent is None
    foreign = torch.full((1, patches.space.dim), 7, dtype=torch.int64)
    foreign[0, :10] = 3
    opt.inject(foreign, torch.tensor([-5.0], dtype=torch.float64))
    assert np.array_equal(opt.parent, foreign[0].numpy()) and opt.value == -5.0


def test_adopting_a_foreign_candidate_ends_the_flat_start(patches):
    """With the default start of 8 flat images, a better foreign image is mutated from the next ask on."""
    opt, plain = OPTIMIZERS.create("codes", patches.space, seed=0), OPTIMIZERS.create("codes", patches.space, seed=0)
    for o in (opt, plain):
        asks(o, 2, 1, lambda z: torch.zeros(len(z), dtype=torch.float64))
    foreign = torch.randint(0, patches.space.size, (1, patches.space.dim), generator=torch.Generator().manual_seed(1))
    opt.inject(foreign, [1.0])
    z, flat = opt.ask(1)[0], plain.ask(1)[0]
    assert len(set(flat.tolist())) == 1  # still surveying flat textures
    assert 0 < int((z != foreign[0]).sum()) < patches.space.dim  # a mutation of the adopted foreign image


@pytest.mark.parametrize("options", [dict(point=-1.0), dict(point=0.0, block=0.0, tile=0.0), dict(reuse=1.5),
                                     dict(beta=-1.0), dict(batch=0), dict(restart=-1), dict(resample=-2),
                                     dict(resample=1), dict(kick=-1)])
def test_bad_options_are_one_line_errors(patches, options):
    with pytest.raises(MangoError) as err:
        OPTIMIZERS.create("codes", patches.space, seed=0, **options)
    assert "\n" not in str(err.value)


def test_settings_are_recorded(patches):
    desc = OPTIMIZERS.create("codes", patches.space, seed=0, batch=5, tile=0.0).describe()
    assert desc["class"] == "CodeSearch" and desc["preferred_batch"] == 5 and desc["tile"] == 0.0
    assert desc["space"] == "codes 32^49"


def test_a_noisy_target_gets_its_best_mean_reported(tmp_path):
    """``auto`` with injected noise: the continuous latent's noisy default (image-model-noisy), and the 5 best
    re-measured at the end (no flag needed); the reported response is the best re-measured mean, not the luckiest
    single trial."""
    res = mango.run(target=TARGET, noise="poisson", budget=60, out=tmp_path / "n", progress=False)
    assert res.config.optimizer == "image-model-noisy" and res.config.remeasure == 5
    rm = res.summary()["remeasured"]
    assert rm is not None and rm["n"] == 5
    import pandas as pd

    table = pd.read_csv(tmp_path / "n" / "remeasured.csv")
    assert res.best_response == pytest.approx(table["mean"].max())
    quiet = mango.run(target=TARGET, noise="poisson", budget=60, remeasure=0, out=tmp_path / "q", progress=False)
    assert quiet.config.remeasure == 0 and quiet.summary()["remeasured"] is None  # a setting given is kept


def test_restarts_from_new_flat_codes_only_while_nothing_responds(patches):
    """A silent unit (every value <= 0) stalls the parent: after ``restart`` asks without a strict improvement
    the next ``start`` asks are new flat codes. After one value > 0, a stalled search keeps mutating."""
    space = patches.space
    opt = CodeSearch(space, seed=0, start=3, restart=5)
    survey = opt.ask(3)
    opt.tell(survey, torch.tensor([-0.9, -0.5, -0.7], dtype=torch.float64))
    stalled = opt.ask(5)  # mutations of the second flat image
    assert opt.flat == 3 and float((stalled == survey[1]).double().mean()) > 0.5
    opt.tell(stalled, torch.full((5,), -0.6, dtype=torch.float64))
    again = opt.ask(3)
    assert all(len(set(r)) == 1 for r in again.tolist())  # a new survey of flat images ...
    assert not {r[0] for r in again.tolist()} & {r[0] for r in survey.tolist()}  # ... of codes not tried yet
    opt.tell(again, torch.tensor([-0.95, -0.8, -0.99], dtype=torch.float64))
    parent = again[1]
    assert float((opt.ask(5) == parent).double().mean()) > 0.5  # the new parent: the best of the new survey

    fired = CodeSearch(space, seed=0, start=3, restart=5)
    first = fired.ask(3)
    fired.tell(first, torch.tensor([0.0, 0.05, -0.5], dtype=torch.float64))  # one value > 0: it responded
    for _ in range(4):
        z = fired.ask(5)
        fired.tell(z, torch.zeros(5, dtype=torch.float64))
        assert fired.flat == 3 and not fired.surveying  # no new survey: mutations of the parent


@pytest.mark.parametrize("kick", [2, 0])
def test_every_other_restart_kicks_the_best_image_so_far(patches, kick):
    """Iterated local search: with ``kick=2`` the second restart's survey is strong perturbations of the best
    image told so far (kept across restarts), not new flat codes; ``kick=0`` always restarts from flat codes."""
    opt = CodeSearch(patches.space, seed=0, start=3, restart=5, kick=kick)
    survey = opt.ask(3)
    opt.tell(survey, torch.tensor([-0.9, -0.5, -0.7], dtype=torch.float64))  # the best so far: survey[1]
    for _ in range(2):  # stall, restart (flat), stall, restart (a kick with kick=2)
        opt.tell(opt.ask(5), torch.full((5,), -1.0, dtype=torch.float64))  # no improvement: a stall
        flat = opt.ask(3)
        assert all(len(set(r)) == 1 for r in flat.tolist()) or opt.restarts == 2
        if opt.restarts == 1:
            opt.tell(flat, torch.tensor([-0.95, -0.8, -0.99], dtype=torch.float64))  # all worse than survey[1]
    assert opt.restarts == 2
    same = (flat == survey[1]).double().mean(1)
    if kick:
        assert bool((same >= 0.6).all() and (same < 1).all())  # near the best image, none of them the image
        assert all(len(set(r)) > 1 for r in flat.tolist())
    else:
        assert all(len(set(r)) == 1 for r in flat.tolist()) and bool((same == 0).all())


def test_no_kicks_when_silent_values_do_not_rank_images(patches):
    """Plain rates: every silent image is 0, so there is no best image to kick; restarts stay flat."""
    opt = CodeSearch(patches.space, seed=0, start=3, restart=5)
    while opt.restarts < 2:
        z = opt.ask(1)
        opt.tell(z, torch.zeros(1, dtype=torch.float64))
    assert len(set(z[0].tolist())) == 1 and opt.surveying  # the second restart's first image: a flat one


def test_restart_zero_never_restarts(patches):
    opt = CodeSearch(patches.space, seed=0, start=2, restart=0)
    opt.tell(opt.ask(2), torch.tensor([-1.0, -1.0], dtype=torch.float64))
    for _ in range(10):
        opt.tell(opt.ask(10), torch.full((10,), -2.0, dtype=torch.float64))
        assert opt.flat == 2 and not opt.surveying


def test_restarts_are_deterministic_given_seed(patches):
    """Restarts depend only on the values told: a replayed history (a resumed run) asks the same codes."""
    silent = lambda z: -1.0 / (1.0 + z.double().sum(1))  # noqa: E731  (always < 0: never responds)
    a, b = (CodeSearch(patches.space, seed=3, start=4, restart=6) for _ in range(2))
    za, zb = (torch.cat(asks(o, 12, 3, silent)) for o in (a, b))
    assert torch.equal(za, zb) and a.flat > 4 and a.restarts >= 2  # it did restart, and kick


def test_resample_reshows_the_parent_and_judges_it_by_its_mean(patches):
    """Under noise a lucky measurement would stay the parent: with ``resample=3`` every third mutation ask
    shows the parent again, its value becomes the mean of its measurements, and a child above that mean wins."""
    opt = CodeSearch(patches.space, seed=0, start=2, restart=0, resample=3)
    survey = opt.ask(2)
    opt.tell(survey, torch.tensor([1.0, 0.2], dtype=torch.float64))  # parent: survey[0], one lucky 1.0
    z = opt.ask(3)
    assert torch.equal(z[2], survey[0]) and not torch.equal(z[0], survey[0]) and not torch.equal(z[1], survey[0])
    opt.tell(z, torch.tensor([0.5, 0.4, 0.0], dtype=torch.float64))
    assert opt.value == 0.5 and np.array_equal(opt.parent, survey[0].numpy())  # mean of 1.0 and 0.0
    child = opt.ask(1)
    opt.tell(child, torch.tensor([0.6], dtype=torch.float64))
    assert np.array_equal(opt.parent, child[0].numpy()) and opt.value == 0.6

    plain = CodeSearch(patches.space, seed=0, start=2, restart=0)  # without: the lucky 1.0 stays the parent
    plain.tell(plain.ask(2), torch.tensor([1.0, 0.2], dtype=torch.float64))
    z = plain.ask(3)
    assert not any(torch.equal(r, survey[0]) for r in z)
    plain.tell(z, torch.tensor([0.5, 0.4, 0.0], dtype=torch.float64))
    plain.tell(plain.ask(1), torch.tensor([0.6], dtype=torch.float64))
    assert plain.value == 1.0 and np.array_equal(plain.parent, survey[0].numpy())


def test_a_noisy_target_on_codes_gets_codes_noisy(tmp_path, patches):
    """``auto`` with injected noise on a categorical latent: ``codes-noisy`` (the parent re-shown), said and
    recorded; its runs show the parent again, so some latents are measured more than once."""
    res = mango.run(generator=patches, target=TARGET, noise="poisson", budget=60, out=tmp_path / "n",
                    progress=False)
    assert res.config.optimizer == "codes-noisy" and res.config.remeasure == 5
    desc = OPTIMIZERS.create("codes-noisy", patches.space, seed=0).describe()
    assert desc["resample"] == 4 and OPTIMIZERS.create("codes", patches.space, seed=0).describe()["resample"] == 0
    from mango.experiment.history import latents

    keys = [tuple(v) for v in latents(res.history).tolist()]
    assert len(set(keys)) < len(keys)  # the parent shown again
