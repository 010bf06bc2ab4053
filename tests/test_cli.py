"""The CLI is thin: it runs the API, prints summaries, and turns user errors into one line + exit 2."""
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mango.cli.main import app

runner = CliRunner()


def test_run_show_and_resume_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--optimizer", "random", "--budget", "40", "--batch", "20", "--seed", "2",
                              "--target", "lif1:6", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "best_response" in res.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["n_queries"] == 40 and summary["target"] == "lif1:6" and summary["seed"] == 2
    shown = runner.invoke(app, ["show", str(out)])
    assert shown.exit_code == 0 and f"{summary['best_response']:.4f}" in shown.output
    more = runner.invoke(app, ["run", "--budget", "60", "--out", str(out), "--resume", "--quiet"])
    assert more.exit_code == 0, more.output
    assert json.loads((out / "result.json").read_text())["n_queries"] == 60


def test_layers_lists_every_layer_with_units_and_spiking_flag():
    res = runner.invoke(app, ["layers", "mnist-snn"])
    assert res.exit_code == 0
    for name in ("conv1", "pool1", "lif1", "conv2", "pool2", "lif2", "fc1", "lif3"):
        assert name in res.output
    line = next(ln for ln in res.output.splitlines() if " lif2 " in ln)
    assert "32" in line and "32x4x4" in line and "yes" in line


@pytest.mark.parametrize("family, name", [("optimizers", "random"), ("optimizers", "tt-s"),
                                          ("generators", "mnist-sngan"), ("targets", "mnist-snn")])
def test_list_families(family, name):
    res = runner.invoke(app, ["list", family])
    assert res.exit_code == 0 and name in res.output


@pytest.mark.parametrize("args, needle", [
    (["run", "--optimizer", "nope"], "unknown optimizer 'nope'"),
    (["run", "--target", "lif7:1"], "unknown layer"),
    (["run", "--target", "lif2:99"], "unit 99 out of range"),
    (["run", "--target", "garbage"], "malformed target spec 'garbage'"),
    (["run", "--budget", "5", "--batch", "10"], "budget 5 is smaller than batch 10"),
    (["run", "--opt", "lr"], "malformed --opt 'lr'"),
    (["run", "--resume"], "resume needs the folder of the run to continue (--out DIR)"),
    (["run", "--model-weights", "/nonexistent.safetensors"], "weights file not found: /nonexistent.safetensors"),
    (["layers", "resnet999"], "unknown model 'resnet999'"),
    (["show", "/nonexistent/run"], "run folder not found"),
    (["show", "."], "is not a MANGO run folder"),
])
def test_user_errors_are_one_line_exit_2_no_traceback(tmp_path, args, needle):
    if args[0] == "run":
        args = [*args, "--out", str(tmp_path / "x")] if "--resume" not in args else args
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_installed_command_reports_errors_without_traceback(tmp_path):
    """The real console script, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "mango.cli", "run", "--target", "lif2:99", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unit 99 out of range for layer 'lif2': it has 32 units (0..31)"


def test_corrupt_weights_given_on_the_command_line(tmp_path):
    bad = tmp_path / "snn.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    (tmp_path / "snn.json").write_text('{"architecture": {}}')
    res = runner.invoke(app, ["run", "--model-weights", str(bad), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: cannot read weights file {bad}: "
                                  "not a valid safetensors file (SafetensorError)")
    assert not (tmp_path / "r").exists()
