"""A self-contained HTML report of a run or a study: one file to send, open anywhere, offline.

Every PNG under the folder is embedded once (base64), so the report shows every figure the analyses and
runs produced there; CSV tables beside the figures become HTML tables (the first rows of long ones). A
study gets a table of its runs, each with its figures in a collapsed section. GIFs are not embedded.
"""
from __future__ import annotations

import base64
import html
import os
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..errors import MangoError
from .study import RUN_FILES, Run, load_runs, read_run

#: rows of a CSV shown in the report (the CSV itself stays the full record)
MAX_ROWS = 30

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { font-size: 1em; margin-bottom: 0.3em; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; } th { background: #f3f3f3; }
details { margin: 0.3em 0; } summary { cursor: pointer; } .note { font-size: 0.85em; color: #666; }
"""


def _figure(path: Path, root: Path) -> str:
    """A PNG embedded as base64, captioned with its path under the report's folder."""
    data = base64.b64encode(path.read_bytes()).decode()
    name = html.escape(str(path.relative_to(root)))
    return f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'



def _table(path: Path, root: Path) -> str:
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # a table the report cannot show is reported, not fatal
        return f'<p class="note">{html.escape(str(path.relative_to(root)))}: unreadable ({type(exc).__name__})</p>'
    note = f" (first {MAX_ROWS} of {len(df)} rows)" if len(df) > MAX_ROWS else f" ({len(df)} rows)"
    return (f"<h3>{html.escape(str(path.relative_to(root)))}{note}</h3>"
            + df.head(MAX_ROWS).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))


def _run_section(run: Run, root: Path, open_: bool) -> str:
    figures = "".join(_figure(p, root) for p in sorted(run.run_dir.glob("*.png")))
    summary = {k: run.summary().get(k) for k in ("target", "model", "generator", "optimizer", "seed", "n_queries",
                                              "best_response", "best_query", "wall_time_s")}
    table = pd.DataFrame([summary]).to_html(index=False, border=0)
    name = html.escape(str(run.run_dir.relative_to(root)) if run.run_dir != root else run.run_dir.name)
    return f"<details{' open' if open_ else ''}><summary>{name}</summary>{table}{figures}</details>"


def _runs_table(runs: list[Run], root: Path) -> str:
    rows = []
    for r in runs:
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            r.run_dir.relative_to(root), r.neuron, r.config.generator, r.method, r.seed, r.n_queries,
            f"{r.best_response:.4g}")) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "neuron", "generator", "method", "seed", "queries", "best"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def report(folder: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Write ``out`` (default ``FOLDER/report.html``): the figures (PNG) and tables (CSV) under ``folder``,
    grouped by sub-folder, then its runs (for a run folder: its summary and figures). Returns the path."""
    root = Path(folder)
    if not root.is_dir():
        raise MangoError(f"folder not found: {root}")
    single = any((root / f).exists() for f in RUN_FILES)
    runs = [read_run(root)] if single else load_runs(root) if _has_runs(root) else []
    run_dirs = {r.run_dir for r in runs}
    parts = [f"<h1>{html.escape(title or f'MANGO report: {root.resolve().name}')}</h1>",
             f'<p class="note">generated {datetime.now():%Y-%m-%d %H:%M} from {html.escape(str(root.resolve()))}; '
             f"{len(runs)} run(s)</p>"]
    for folder_, files in _analysis_folders(root, run_dirs):
        pngs = [f for f in files if f.suffix == ".png"]
        csvs = [f for f in files if f.suffix == ".csv"]
        if not pngs and not csvs:
            continue
        label = "." if folder_ == root else str(folder_.relative_to(root))
        parts.append(f"<h2>{html.escape(label)}</h2>")
        parts += [_figure(p, root) for p in pngs]
        parts += [_table(c, root) for c in csvs]
    if single:
        parts.append(f"<h2>run</h2>{_run_section(runs[0], root, True)}")
    elif runs:
        parts.append(f"<h2>runs ({len(runs)})</h2>{_runs_table(runs, root)}")
        parts += [_run_section(r, root, False) for r in runs]
    if not runs and len(parts) == 2:
        raise MangoError(f"nothing to report in {root}: no figures, tables or runs under it")
    path = Path(out) if out is not None else root / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>"
                    f"{html.escape(title or root.name)}</title><style>{STYLE}</style></head><body>\n"
                    + "\n".join(parts) + "\n</body></html>\n")
    return path


def _has_runs(root: Path) -> bool:
    return any(any(f in files for f in RUN_FILES) for _, _, files in os.walk(root))


def _analysis_folders(root: Path, run_dirs: set[Path]) -> list[tuple[Path, list[Path]]]:
    """Folders under ``root`` that are not run folders, with their PNG and CSV files, sorted."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        here = Path(dirpath)
        dirs[:] = sorted(d for d in dirs if here / d not in run_dirs)
        if here in run_dirs:
            continue
        found.append((here, sorted(here / f for f in files if f.endswith((".png", ".csv")))))
    return found
