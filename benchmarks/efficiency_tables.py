"""The tables of ``benchmarks/efficiency.py``: goal 1's readings from the recorded runs (no run is made here).

Every function takes the run records (dicts as ``efficiency.run_one`` writes them) and the unit names
(``mnist/lif1:9``); the default's runs are those of method ``auto``.
"""
from __future__ import annotations

import math

import numpy as np

BUDGETS = (250, 1000, 3000)
CURVE_STEP = 10
#: the methods goal 1 compares the default with
BASELINES = ("cma", "sepcma", "ga", "ng-portfolio")


def medians(runs: list[dict], unit: str, method: str, condition: str) -> tuple[dict[int, float], dict[int, float], int]:
    """Median and upper quartile over seeds of the score at each budget, and the number of seeds."""
    rs = [r for r in runs if (r["unit"], r["method"], r["condition"]) == (unit, method, condition)]
    if not rs:
        return {}, {}, 0
    at = {b: [r["at"][str(b)] for r in rs if str(b) in r["at"]] for b in BUDGETS}  # NaN where no run reached b
    return ({b: float(np.median(v)) if v else math.nan for b, v in at.items()},
            {b: float(np.percentile(v, 75)) if v else math.nan for b, v in at.items()}, len(rs))


def scores_at(runs: list[dict], unit: str, method: str, condition: str, budget: int) -> list[float]:
    """The seeds' scores at ``budget``; a run shorter than ``budget`` (``--queries``) has none there."""
    return [r["at"][str(budget)] for r in runs
            if (r["unit"], r["method"], r["condition"]) == (unit, method, condition) and str(budget) in r["at"]]


def worse(runs: list[dict], unit: str, condition: str, other: str, budget: int, alpha: float = 0.05,
          default: str = "auto") -> bool:
    """Whether ``other`` is better than ``default`` at ``budget`` beyond the seed spread: a one-sided
    Mann-Whitney U test over the seeds' scores at level ``alpha`` (with 5 seeds each: at most 4 of the 25
    pairs favour the default)."""
    from scipy.stats import mannwhitneyu

    a, b = scores_at(runs, unit, other, condition, budget), scores_at(runs, unit, default, condition, budget)
    if len(set(a) | set(b)) < 2:
        return False
    return bool(mannwhitneyu(a, b, alternative="greater").pvalue < alpha)


def reach(runs: list[dict], unit: str, condition: str, level: float) -> float:
    """Median over seeds of the queries the default needs to report an MEI at ``level`` (inf: never)."""
    rs = [r for r in runs if (r["unit"], r["method"], r["condition"]) == (unit, "auto", condition)]
    need = [next((CURVE_STEP * (i + 1) for i, x in enumerate(r["curve"]) if x >= level), math.inf) for r in rs]
    return float(np.median(need)) if need else math.nan


def fired_units(runs: list[dict], units: list[str]) -> set[str]:
    """Goal 1's units "not silent": some black-box run made the unit fire (units only the white box makes fire
    are goal 2's, benchmarks/silent.py)."""
    return {u for u in units if any(r["unit"] == u and max(r["at"].values()) > 0
                                    for r in runs if r["condition"] == "clean")}


def report(runs: list[dict], ceilings: dict[str, float], units: list[str], methods: list[str]) -> tuple[dict, str]:
    lines, summary = [], {}
    fired = fired_units(runs, units)
    for condition in ("clean", "noisy"):
        head = f"{'unit':<22}{'ceiling':>8}  {'method':<13}{'seeds':>5}" + "".join(f"{'@' + str(b):>8}"
                                                                                 for b in BUDGETS)
        lines += [f"## {condition}", head]
        rows, goal1, needs = [], [], []
        spread, tested, ratio = ({b: [] for b in BUDGETS} for _ in range(3))
        for u in units:
            table = {m: medians(runs, u, m, condition) for m in methods}
            if not all(table[m][2] for m in methods):
                continue
            for m in methods:
                med, _, n = table[m]
                rows.append({"unit": u, "method": m, "seeds": n, **{f"median@{b}": med[b] for b in BUDGETS}})
                lines.append(f"{u:<22}{ceilings.get(u, math.nan):>8.3f}  {m:<13}{n:>5}"
                             + "".join(f"{med[b]:>8.3f}" for b in BUDGETS))
            lines.append("")
            if u not in fired or "auto" not in table or "ng-portfolio" not in table:
                continue
            goal1.append(table["auto"][0][1000] >= table["ng-portfolio"][0][3000])
            needs.append(reach(runs, u, condition, table["ng-portfolio"][0][3000]))
            for b in (b for b in BUDGETS if not math.isnan(table["auto"][0][b])):  # the budgets it was run to
                best_other = max(table[m][0][b] for m in methods if m != "auto")
                spread[b].append(table["auto"][1][b] >= best_other)
                beaten = [m for m in methods if m != "auto" and worse(runs, u, condition, m, b)]
                tested[b].append(not beaten)
                if beaten:
                    lines.append(f"{u} @{b}: {', '.join(beaten)} better than the default beyond the seed spread")
                if ceilings.get(u, 0) > 0:
                    ratio[b].append(table["auto"][0][b] / ceilings[u])
        summary[condition] = {
            "units_compared": len(goal1),
            "default@1000_reaches_portfolio@3000": f"{sum(goal1)}/{len(goal1)}",
            "default_queries_to_portfolio@3000_median": float(np.median(needs)) if needs else None,
            "default_within_spread_of_best_other": {str(b): f"{sum(v)}/{len(v)}" for b, v in spread.items()},
            "no_other_better_mann_whitney_0.05": {str(b): f"{sum(v)}/{len(v)}" for b, v in tested.items()},
            "default_over_ceiling_median": {str(b): round(float(np.median(v)), 3) if v else None
                                            for b, v in ratio.items()},
            "rows": rows}
        s = summary[condition]
        lines += [f"default@1000 >= ng-portfolio@3000 (median over seeds): {s['default@1000_reaches_portfolio@3000']}"
                  f" units that fire; queries the default needs for it (median unit): "
                  f"{s['default_queries_to_portfolio@3000_median']}",
                  "default's upper quartile >= the best other method's median: "
                  + ", ".join(f"@{b} {v}" for b, v in s["default_within_spread_of_best_other"].items()),
                  "no other method better than the default (one-sided Mann-Whitney U over seeds, p < 0.05): "
                  + ", ".join(f"@{b} {v}" for b, v in s["no_other_better_mann_whitney_0.05"].items()),
                  "default / white-box ceiling (median unit): "
                  + ", ".join(f"@{b} {v}" for b, v in s["default_over_ceiling_median"].items()), ""]
    silent = [u for u in units if u not in fired and u in ceilings and ceilings[u] == 0]
    only_white = [u for u in units if u not in fired and ceilings.get(u, 0) > 0]
    summary["unreachable"], summary["fired_only_white_box"] = silent, only_white
    lines.append(f"no image of the generator found to make these units fire (white-box nor any method): {silent}")
    lines.append(f"only the white-box search made these fire: {only_white}")
    return summary, "\n".join(lines)


def as_default(runs: list[dict], units: list[str], candidate: str, condition: str) -> tuple[list[str], list[str]]:
    """Goal 1 with ``candidate`` in the default's place: the points (unit @ budget) where one of cma, sepcma, ga
    and ng-portfolio, other than the candidate itself, is better beyond the seed spread (reading (b)), and per
    unit that fires its median at 1,000 against Portfolio's at 3,000 (``+`` where it reaches it). Answers
    whether any single method measured would meet goal 1 on this draw."""
    fired = fired_units(runs, units)
    others = [m for m in BASELINES if m != candidate]
    lost, reaches = [], []
    for u in units:
        if u not in fired or not all(scores_at(runs, u, m, condition, 250) for m in [candidate, *others]):
            continue
        mine, theirs = (float(np.median(scores_at(runs, u, m, condition, b)))
                        for m, b in ((candidate, 1000), ("ng-portfolio", 3000)))
        reaches.append(f"{'+' if mine >= theirs else '-'}{u} {mine:.3f}/{theirs:.3f}")
        for b in (b for b in BUDGETS if scores_at(runs, u, candidate, condition, b)):  # the budgets it was run to
            beaten = [m for m in others if worse(runs, u, condition, m, b, default=candidate)]
            lost += [f"{u} @{b} ({', '.join(beaten)})"] if beaten else []
    return lost, reaches


def aa_test(runs: list[dict], units: list[str], more_seeds: list[dict], condition: str) -> tuple[list[str], int]:
    """Reading (b)'s false alarms in this set-up: the default's runs with other seeds (``more_seeds``, e.g.
    seeds 5-9) tested against its own seeds 0-4 exactly as a baseline is, both ways. Every point found is
    chance; how many there are is what one point behind a baseline should be read against. Returns the
    points and the number of tests."""
    other = "auto (other seeds)"
    more_seeds = [r for r in more_seeds if r["kind"] == "run" and r["method"] == "auto"]
    if not more_seeds:
        raise SystemExit("--aa: no runs of the default in that file (make them with --methods auto --first-seed 5)")
    first = min(r["seed"] for r in more_seeds)
    pooled = [r for r in runs if r["method"] == "auto"] + [dict(r, method=other, seed=r["seed"] - first)
                                                          for r in more_seeds]
    found, tests = [], 0
    for u in sorted(fired_units(runs, units)):
        if not (scores_at(pooled, u, "auto", condition, 250) and scores_at(pooled, u, other, condition, 250)):
            continue
        for b in BUDGETS:
            for x, y in ((other, "auto"), ("auto", other)):
                tests += 1
                found += [f"{u} @{b} ({x} ahead)"] if worse(pooled, u, condition, x, b, default=y) else []
    return found, tests


def markdown(runs: list[dict], ceilings: dict[str, float], units: list[str], methods: list[str],
             condition: str) -> str:
    """One row per unit: the default's medians, the best other method's, ng-portfolio's at 3,000, the queries
    the default needs to reach that (median over seeds), the ceiling."""
    others = [m for m in methods if m != "auto"]
    lines = ["| unit | seeds | default @250 / @1000 / @3000 | best other @250 / @1000 / @3000 | ng-portfolio @3000 "
             "| default needs | white-box |", "|---|---|---|---|---|---|---|"]
    for u in units:
        table = {m: medians(runs, u, m, condition) for m in methods}
        if not all(table[m][2] for m in methods):
            continue
        auto = table["auto"][0]
        best = {b: max(others, key=lambda m: table[m][0][b]) for b in BUDGETS}
        pf = table["ng-portfolio"][0][3000]
        need = reach(runs, u, condition, pf) if pf > 0 else math.nan
        beyond = ">" + str(CURVE_STEP * max(len(r["curve"]) for r in runs  # the longest run of the default
                                            if (r["unit"], r["method"], r["condition"]) == (u, "auto", condition)))
        lines.append(f"| {u} | {min(t[2] for t in table.values())} | "
                     + " / ".join("not run" if math.isnan(auto[b]) else f"{auto[b]:.3f}" for b in BUDGETS) + " | "
                     + " / ".join(f"{table[best[b]][0][b]:.3f} ({best[b]})" for b in BUDGETS)
                     + f" | {pf:.3f} | {'-' if math.isnan(need) else beyond if math.isinf(need) else int(need)} | "
                     + f"{ceilings.get(u, math.nan):.3f} |")
    return "\n".join(lines)
