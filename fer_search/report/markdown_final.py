"""report.md's final evaluation: final.json's test numbers with their intervals, the paired
comparisons, which ensemble val chose (and why), and the best model per class."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fer_search.report.markdown_trials import md_name
from fer_search.report.text import (
    fmt_ci,
    fmt_num,
    fmt_p,
    fmt_pct,
    fmt_pp,
    fmt_value,
    is_number,
    md_cell,
    md_table,
)

__all__ = ["md_final", "md_per_class"]


def code(trial_id: Any) -> str:
    """A trial by its id alone, where no facts name it (markdown_trials.md_name does)."""
    return f"`{trial_id}`"


MAX_MEMBERS_SHOWN = 10  # a bagged selection over a thousand trials can weight a hundred

FINAL_HEADER = [
    "model",
    "trials",
    "val acc (PublicTest, used to select)",
    "test acc (PrivateTest, used once)",
    "test acc, flip TTA (PrivateTest)",
    "test macro-F1 (PrivateTest)",
]


def md_final(facts: dict[str, Any]) -> str:
    final = facts["final"]
    if not final:
        return (
            "## Final evaluation\n\nNot run: no final.json (the search was interrupted or "
            "ran with --no-final-eval). Test accuracy is not reported."
        )
    best, ensemble = final.get("best") or {}, final.get("ensemble")

    def name(trial_id: Any) -> str:
        return md_name(trial_id, facts)

    rows = [final_row("best trial", [best.get("trial_id", "?")], best, name)]
    if ensemble:
        members = ensemble.get("trial_ids") or []
        rows.append(final_row(f"top-{ensemble.get('k', '?')} ensemble", members, ensemble, name))
    lines = [
        "## Final evaluation",
        "",
        f"Selection rule: {final.get('selection', '(not recorded)')}",
        "",
        md_table(FINAL_HEADER, "llrrrr", rows),
    ]
    sentences = comparison_sentences(final, name) + choice_sentences(final, name)
    if sentences:
        lines += ["", *(f"- {s}" for s in sentences)]
    if final.get("ci_method"):
        lines += ["", f"Intervals: {final['ci_method']}."]
    if best.get("checkpoint"):
        lines += ["", f"Best checkpoint: `{best['checkpoint']}`"]
    if best.get("config"):
        config = json.dumps(best["config"], indent=2, sort_keys=True)
        summary = "<details><summary>best trial's config</summary>"
        lines += ["", summary, "", "```json", config, "```", "", "</details>"]
    return "\n".join(lines)


def final_row(
    model: str, trial_ids: list[Any], numbers: dict[str, Any], name: Callable[[Any], str]
) -> list[str]:
    return [
        model,
        ", ".join(name(t) for t in trial_ids),
        fmt_pct(numbers.get("val_acc")),
        fmt_ci(numbers.get("test_acc"), numbers.get("test_acc_ci95"), percent=True),
        fmt_ci(numbers.get("test_acc_flip"), numbers.get("test_acc_flip_ci95"), percent=True),
        fmt_ci(numbers.get("test_f1"), numbers.get("test_f1_ci95"), percent=False),
    ]


def choice_sentences(final: dict[str, Any], name: Callable[[Any], str] = code) -> list[str]:
    """How the TTA mode and the selected ensemble were chosen (on val), and what they scored on
    test; nothing for a final.json from before they existed."""
    sentences = []
    tta = final.get("tta")
    if tta:
        on_val = ", ".join(f"{m} {fmt_pct(a)}" for m, a in tta["val_acc"].items())
        sentences.append(
            f"Test-time augmentation chosen on val: **{tta['chosen']}** ({on_val} on val); "
            f"the best trial with it scores "
            f"{fmt_ci(tta['test_acc'], tta.get('test_acc_ci95'), percent=True)} on test."
        )
    chosen = final.get("selected_ensemble")
    if chosen:
        members = member_list(chosen["members"], chosen["weights"], name)
        names = {"selection": "the greedy selection", "bagged": "the bagged selection"}
        picked = names.get(chosen["chosen"], "the top-k average")
        sentences.append(
            f"Ensemble from all trials: {chosen['method']}. Val chose {picked} ({members}): "
            f"val {fmt_pct(chosen['val_acc'])}, test "
            f"{fmt_ci(chosen['test_acc'], chosen.get('test_acc_ci95'), percent=True)}."
            + passed_over(chosen)
        )
    return sentences


def passed_over(chosen: dict[str, Any]) -> str:
    """The candidates val did not choose, each once: ` Not chosen: the greedy selection val
    69.1 % (not chosen, so not tested); the top-k average val 68.5 %.`"""
    others = []
    if chosen["chosen"] != "selection":
        others.append(f"the greedy selection {candidate_scores(chosen['selection'])}")
    bagged = chosen.get("bagged")  # not in a final.json from before it
    if bagged and chosen["chosen"] != "bagged":
        others.append(f"the bagged selection {candidate_scores(bagged)}")
    if chosen["chosen"] != "top_k":
        others.append(f"the top-k average val {fmt_pct(chosen['top_k_val_acc'])}")
    return f" Not chosen: {'; '.join(others)}." if others else ""


def member_list(members: list[str], weights: list[float], name: Callable[[Any], str] = code) -> str:
    """The ensemble's members by weight, heaviest first: at most MAX_MEMBERS_SHOWN of them, then
    how many more (final.json's selected_ensemble lists them all)."""
    ranked = sorted(zip(members, weights, strict=True), key=lambda mw: -mw[1])
    shown = ", ".join(f"{name(m)} x{w:g}" for m, w in ranked[:MAX_MEMBERS_SHOWN])
    more = len(ranked) - MAX_MEMBERS_SHOWN
    return shown + (f" and {more} more in final.json" if more > 0 else "")


def candidate_scores(candidate: dict[str, Any]) -> str:
    """An ensemble candidate's val and test accuracy; one val did not choose was not tested."""
    if candidate.get("test_acc") is None:
        return f"val {fmt_pct(candidate['val_acc'])} (not chosen, so not tested)"
    return f"val {fmt_pct(candidate['val_acc'])}, test {fmt_pct(candidate['test_acc'])}"


def comparison_sentences(final: dict[str, Any], name: Callable[[Any], str] = code) -> list[str]:
    """One sentence per paired comparison on test: how far apart, and whether beyond noise."""
    comparisons = final.get("comparisons") or {}
    others = {
        "best_vs_runner_up": "the runner-up",
        "best_vs_ensemble": f"the top-{(final.get('ensemble') or {}).get('k', '?')} ensemble",
    }
    sentences = []
    for key, other in others.items():
        found = comparisons.get(key) or {}
        if key == "best_vs_runner_up" and found.get("b") is not None:
            other += f" ({name(found['b'])})"
        sentence = comparison_sentence(found.get("test") or {}, other)
        if sentence:
            sentences.append(sentence)
    return sentences


def comparison_sentence(result: dict[str, Any], other: str) -> str:
    """ "The best trial is 0.8 pp ahead of <other> on test, within noise (95 % CI ...)", or ""
    when `result` (stats.paired_comparison's) is incomplete."""
    difference: Any = result.get("difference")
    p: Any = result.get("p_value")
    interval: Any = result.get("difference_ci95")
    if not (is_number(difference) and is_number(p) and isinstance(interval, list)):
        return ""
    if len(interval) != 2 or not all(is_number(v) for v in interval):
        return ""
    if difference == 0:
        where = f"level with {other}"
    else:
        side = "ahead of" if difference > 0 else "behind"
        where = f"{fmt_pp(abs(difference))} pp {side} {other}"
    noise = "within noise" if result.get("within_noise") else "beyond noise"
    return (
        f"The best trial is {where} on test, {noise} "
        f"(95 % CI {fmt_pp(interval[0])} to {fmt_pp(interval[1])} pp, McNemar {fmt_p(p)})."
    )


def md_per_class(facts: dict[str, Any]) -> str:
    metrics = ((facts["final"] or {}).get("best") or {}).get("metrics") or {}
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return ""
    rows = [
        [
            md_cell(name),
            fmt_num(m.get("precision"), 3),
            fmt_num(m.get("recall"), 3),
            fmt_num(m.get("f1"), 3),
            fmt_value(m.get("support")),
        ]
        for name, m in per_class.items()
    ]
    table = md_table(["class", "precision", "recall", "F1", "support"], "lrrrr", rows)
    summary = (
        f"Accuracy {fmt_pct(metrics.get('accuracy'))}, macro-F1 {fmt_num(metrics.get('macro_f1'))}."
    )
    return f"## Best model per class (PrivateTest)\n\n{table}\n\n{summary}"
