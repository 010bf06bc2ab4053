"""``mango analyze ceiling``: each run's best response over its neuron's white-box MEI."""
from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

import mango
from mango import MangoError
from mango.cli.main import app

STEPS, RESTARTS = 20, 2


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("ceiling")
    for target in ("lif2:12", "class:3"):
        for seed in (0, 1):
            mango.run(optimizer="random", target=target, budget=30, seed=seed, progress=False,
                      out=root / f"{target.replace(':', '_')}_s{seed}")
    return root


@pytest.fixture(scope="module")
def result(study):
    return mango.analysis.ceiling(study, study / "analysis", steps=STEPS, restarts=RESTARTS)


def test_each_run_is_scored_against_its_neurons_white_box_mei(result, study, sngan, snn):
    runs, neurons = result.table, result.tables["neurons"]
    assert len(runs) == 4 and sorted(neurons["neuron"]) == ["mnist-snn class:3", "mnist-snn lif2:12"]
    for _, row in runs.iterrows():
        assert math.isclose(row["ratio"], row["best_response"] / row["ceiling"])
    for _, n in neurons.iterrows():
        mine = runs[runs["neuron"] == n["neuron"]]
        assert (mine["ceiling"] == n["ceiling"]).all() and n["best_run"] == mine["best_response"].max()
        # the white-box search (gradients) beats 30 random latents on both neurons
        assert n["reachable"] and n["ceiling"] >= n["best_run"] > 0
    # the ceiling is what the target says for the white-box latent
    mei = mango.gradient_mei(sngan, snn, "class:3", steps=STEPS, restarts=RESTARTS)
    assert float(mango.make_target(snn, "class:3").responses(sngan.decode(mei.latent[None]))[0, 0]) == mei.response
    assert mei.response == float(neurons.set_index("neuron").loc["mnist-snn class:3", "ceiling"])
    assert {p.name for p in result.figures + result.files} == {"ceiling.png", "ceiling.csv", "ceiling_neurons.csv"}


def test_cli_writes_the_tables_and_says_what_is_unreachable(study, tmp_path):
    res = CliRunner().invoke(app, ["analyze", "ceiling", str(study), "--steps", "2", "--restarts", "1", "--quiet",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ceiling.png").stat().st_size > 0 and (tmp_path / "ceiling.csv").exists()
    assert "median best / ceiling" in res.output and "not reachable with this generator: none" in res.output


def test_a_run_that_reads_no_spike_rate_is_refused_in_one_line(tmp_path):
    mango.run(optimizer="random", target="lif2:12", readout="membrane", budget=10, progress=False, out=tmp_path / "m")
    with pytest.raises(MangoError, match="membrane") as err:
        mango.analysis.ceiling(tmp_path, steps=1, restarts=1)
    assert "\n" not in str(err.value)

