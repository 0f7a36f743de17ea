"""The report's tuning block: a `nnopt.report.figures.SectionFn` for studies with a `tune:` block.

Reads results/search/{study}/trials.parquet and chosen.json (written by `nnopt search-summary`)
and returns, per study: best-so-far vs trials per configuration; the selection metric vs each
tuned value (log axis for log ranges, 95 % t intervals over tuning seeds where there are
several); the expected best validation score of k trials vs k with a ±1 sd band (Dodge et
al. 2019, computed exactly from the trials' order statistics); and a table of the chosen
values (flagged when at a range edge) with tuned-vs-default test scores on fresh seeds.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from nnopt.config.metrics import metric_info
from nnopt.config.studies import Study
from nnopt.report.figures import Figure, palette, to_svg
from nnopt.report.plotting import pyplot  # matplotlib, imported when a figure is drawn

__all__ = ["expected_best_of_k", "search_section", "chosen_table"]

_DEEPOBS_RATIO = "160–630×"  # DeepOBS: best SGD rate / best Adam rate on its test problems


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def expected_best_of_k(values: Sequence[float], ks: Sequence[int], higher_is_better: bool = True):
    """(mean, sd) of the best of k draws (with replacement) from the trials' empirical
    distribution: P(max = v_(i)) = (i/n)^k - ((i-1)/n)^k for the sorted values v_(1..n)."""
    v = np.sort(np.asarray(values, dtype=float))
    if not higher_is_better:
        v = -v[::-1]
    n = len(v)
    i = np.arange(1, n + 1)
    means, sds = [], []
    for k in ks:
        p = (i / n) ** k - ((i - 1) / n) ** k
        mean = float(np.sum(p * v))
        sds.append(math.sqrt(max(float(np.sum(p * v**2)) - mean**2, 0.0)))
        means.append(mean if higher_is_better else -mean)
    return np.array(means), np.array(sds)


def _trial_scores(trials: pl.DataFrame, asha: bool) -> pl.DataFrame:
    """Per configuration × trial: mean and t-interval half-width of the selection metric over
    tuning seeds, at one common budget (rung 0 with successive halving: all trials ran it)."""
    part = trials.filter(pl.col("phase") == "trial")
    if asha:
        part = part.filter(pl.col("rung") == 0)
    keys = [c for c in part.columns if c.startswith("tune.")]
    return (
        part.group_by("config_index", "config", "trial", *keys)
        .agg(pl.col("select").mean().alias("mean"), pl.col("select").std().alias("sd"),
             pl.col("select").count().alias("n"))
        .sort("config_index", "trial")
    )  # fmt: skip


def _halfwidth(sd: Any, n: int) -> float:
    if n < 2 or sd is None or not math.isfinite(sd):
        return 0.0
    from scipy import stats as sps

    return float(sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def _best_so_far(scores: pl.DataFrame, chosen: dict, colours) -> str:
    info = metric_info(chosen["select"])
    fig, ax = pyplot().subplots(figsize=(6.3, 2.6))
    for (label,), part in scores.group_by("config", maintain_order=True):
        y = np.array([v if v is not None else np.nan for v in part["mean"]]) * info.scale
        y = np.where(np.isnan(y), -np.inf if info.higher_is_better else np.inf, y)
        best = np.maximum.accumulate(y) if info.higher_is_better else np.minimum.accumulate(y)
        ax.step(np.arange(1, len(best) + 1), best, where="post", color=colours[label], label=label)
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel("trials")
    ax.set_ylabel(f"best so far: {info.axis_label}")
    ax.legend(fontsize=7, frameon=False)
    return to_svg(fig)


def _sensitivity(scores: pl.DataFrame, chosen: dict, colours) -> str:
    info = metric_info(chosen["select"])
    keys = list(chosen["params"])
    own = {c["config"]: c.get("params", chosen["params"]) for c in chosen["configs"]}
    fig, axes = pyplot().subplots(1, len(keys), figsize=(6.3, 2.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for (label,), part in scores.group_by("config", maintain_order=True):
            # a key only some configurations tune (params_by_config) is null for the rest
            ok = part.filter(pl.col("mean").is_not_null() & pl.col(f"tune.{key}").is_not_null())
            if ok.is_empty():
                continue
            numeric = chosen["params"][key]["kind"] != "choice"
            ok = ok.sort(f"tune.{key}") if numeric else ok
            x = ok[f"tune.{key}"].to_list()
            y = np.array(ok["mean"].to_list()) * info.scale
            err = [_halfwidth(s, n) * info.scale for s, n in zip(ok["sd"], ok["n"])]
            # a configuration tuning this value alone: a curve; else points (others vary too)
            fmt = "o-" if numeric and len(own.get(label, chosen["params"])) == 1 else "o"
            ax.errorbar(x if numeric else [str(v) for v in x], y, yerr=err if any(err) else None,
                        fmt=fmt, ms=3, lw=1, color=colours[label], label=label, alpha=0.8)  # fmt: skip
        if chosen["params"][key]["kind"] == "log_uniform":
            ax.set_xscale("log")
        ax.set_xlabel(key)
    axes[0][0].set_ylabel(info.axis_label)
    axes[0][0].legend(fontsize=7, frameon=False, loc="lower left")
    return to_svg(fig)


def _expected_best(scores: pl.DataFrame, chosen: dict, colours) -> str:
    info = metric_info(chosen["select"])
    fig, ax = pyplot().subplots(figsize=(6.3, 2.6))
    for (label,), part in scores.group_by("config", maintain_order=True):
        values = [v for v in part["mean"] if v is not None and math.isfinite(v)]
        if not values:
            continue
        ks = np.arange(1, len(values) + 1)
        mean, sd = expected_best_of_k(values, ks, info.higher_is_better)
        ax.plot(ks, mean * info.scale, color=colours[label], label=label)
        # The best of k draws never leaves the observed range: the band is clipped to it.
        low, high = np.clip([mean - sd, mean + sd], min(values), max(values)) * info.scale
        ax.fill_between(ks, low, high, color=colours[label], alpha=0.2, lw=0)
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel("trial budget k")
    ax.set_ylabel(f"expected best {info.label.lower()}")
    ax.legend(fontsize=7, frameon=False)
    return to_svg(fig)


def _mean_sd(frame: pl.DataFrame, column: str, scale: float) -> str:
    values = [v for v in frame[column] if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    text = f"{np.mean(values) * scale:.2f}"
    return text + (f" ± {np.std(values, ddof=1) * scale:.2f}" if len(values) > 1 else "") + f" (n={len(values)})"


def chosen_table(trials: pl.DataFrame, chosen: dict) -> str:
    """HTML: per configuration the trial budget, the chosen values (edge warnings), and test
    accuracy of the confirmation runs (fresh seeds) beside the untuned default's."""
    test = metric_info("test_accuracy")
    head = ("<tr><th>Configuration</th><th>Trials</th><th>Chosen values</th>"
            "<th>Tuned: test acc. (%)</th><th>Default: test acc. (%)</th></tr>")  # fmt: skip
    rows = []
    for c in chosen["configs"]:
        values = []
        for key, value in c["values"].items():
            text = escape(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
            if key in c["at_edge"]:
                text += f" <strong>⚠ at the {c['at_edge'][key]} edge of its range</strong>"
            values.append(text)
        of = trials.filter(pl.col("config_index") == c["config_index"])
        tuned = _mean_sd(of.filter(pl.col("phase") == "confirm"), "test_accuracy", test.scale)
        default = _mean_sd(of.filter(pl.col("phase") == "default"), "test_accuracy", test.scale)
        rows.append(f"<tr><td>{escape(c['config'])}</td><td>{c['trials']}</td>"
                    f"<td>{'<br>'.join(values)}</td><td>{tuned}</td><td>{default}</td></tr>")  # fmt: skip
    return f'<table class="search-chosen"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _notes(chosen: dict) -> str:
    ks = sorted({c["trials"] for c in chosen["configs"]})
    budget = f"the same trial budget k = {ks[0]} for every configuration" if len(ks) == 1 else (
        "trial budgets k = " + ", ".join(f"{c['trials']} ({c['config']})" for c in chosen["configs"]))
    text = (f"Sampler {chosen['sampler']} (seed {chosen['seed']}), {budget}; selected on "
            f"{metric_info(chosen['select']).label.lower()} over tuning seeds "
            f"{chosen['tuning_seeds']}; tuned test scores come from fresh seeds "
            f"{chosen['confirm_seeds']}.")  # fmt: skip
    edges = [c["config"] for c in chosen["configs"] if c["at_edge"]]
    if edges:
        text += (" A chosen value at the edge of its range means the range was too narrow, "
                 f"not that the method lost: {', '.join(edges)}.")  # fmt: skip
    return text + _rate_note(chosen)


def _rate_note(chosen: dict) -> str:
    """The chosen learning rates' spread and, with plain SGD and Adam both tuned, their
    ratio beside DeepOBS's (Schneider et al. 2019): 160–630× on its test problems."""
    rates = {c["config"]: c["values"].get("optimizer.lr") for c in chosen["configs"]}
    rates = {k: v for k, v in rates.items() if isinstance(v, (int, float)) and v > 0}
    hi, lo = (max(rates, key=rates.get), min(rates, key=rates.get)) if rates else (None, None)
    if hi == lo:
        return ""
    sgd, adam = (next((r for k, r in rates.items() if _optimizer(k) == name), None)
                 for name in ("sgd", "adam"))  # fmt: skip
    span = f" Best learning rates span {rates[hi] / rates[lo]:.0f}× ({hi} / {lo})"
    if sgd is None or adam is None:  # DeepOBS's ratio is about optimizers, not other factors
        return span + (f"; DeepOBS reports {_DEEPOBS_RATIO} between SGD's and Adam's best "
                       "rates on its problems." if any(map(_optimizer, rates)) else ".")
    return (f" Tuned best learning rates (dimensionless step sizes): SGD {sgd:.3g}, Adam "
            f"{adam:.3g}, a ratio SGD / Adam of {sgd / adam:.0f}×; DeepOBS (Schneider et al. "
            f"2019) reports {_DEEPOBS_RATIO} between SGD's and Adam's best rates on its problems. "
            f"All chosen rates span {rates[hi] / rates[lo]:.0f}× ({hi} / {lo}).")


def _optimizer(label: str) -> str | None:
    """The optimizer a configuration label names (`optimizer.name=sgd` -> sgd)."""
    for part in label.split(","):
        key, _, value = part.strip().partition("=")
        if key == "optimizer.name":
            return value
    return None


def search_section(study: Study, results_dir: Path) -> list[Figure]:
    """Figures for a tuned study whose search is summarized; [] otherwise."""
    folder = Path(results_dir) / "search" / study.name
    if study.tune is None or not (folder / "trials.parquet").exists():
        return []
    trials = pl.read_parquet(folder / "trials.parquet")
    chosen = json.loads((folder / "chosen.json").read_text())
    scores = _trial_scores(trials, chosen["asha"] is not None)
    if scores.is_empty():
        return []
    colours = palette(list(dict.fromkeys(scores["config"])))
    at = " (rung 0: every trial at the smallest budget)" if chosen["asha"] else ""
    return [
        Figure("search-best", "Tuning: best so far", _best_so_far(scores, chosen, colours),
               caption=f"Best selection score after each trial, per configuration{at}."),
        Figure("search-sensitivity", "Tuning: sensitivity", _sensitivity(scores, chosen, colours),
               caption="Selection metric against each tuned value; bars: 95 % t intervals "
                       "over tuning seeds where there are several."),
        Figure("search-expected", "Tuning: expected best of k trials",
               _expected_best(scores, chosen, colours),
               caption="Expected best validation score of k trials (Dodge et al. 2019), "
                       "±1 sd band: which configuration wins depends on the tuning budget."),
        Figure("search-chosen", "Tuning: chosen values, tuned vs default",
               chosen_table(trials, chosen), note=_notes(chosen)),
    ]  # fmt: skip
