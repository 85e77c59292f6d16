"""A value head's card: its README, written from its manifest and ``ttscale prm eval``'s
``eval.json`` so that every figure in it comes from those records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ttscale.errors import ConfigError
from ttscale.rewards.value_head import read_manifest

EVAL_FILE = "eval.json"
CARD_FILE = "README.md"


def _pct(estimate: dict) -> str:
    return (f"{estimate['value']:.1%} [{estimate['low']:.1%}, {estimate['high']:.1%}]")


def _signed(estimate: dict) -> str:
    return (f"{estimate['value']:+.1%} [{estimate['low']:+.1%}, {estimate['high']:+.1%}]")


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _exact(method: str) -> bool:
    """A labels folder made by ``ttscale prm label --method exact`` (its manifest's
    ``label_method``, :data:`ttscale.prm_training.labels.METHOD_DESCRIPTIONS`)."""
    return method.startswith("exact")


def _label_source(methods: list[str]) -> str:
    """Where the head's training labels came from, in words."""
    exact = [_exact(m) for m in methods]
    if exact and all(exact):
        return ("exact step labels from the ladder's recorded quantities (`ttscale prm label "
                "--method exact`: each step checked against the problem's true intermediate "
                "values, no rollouts, no human labels)")
    if any(exact):
        return ("automatic Monte-Carlo step labels and exact step labels from the ladder's "
                "recorded quantities, both from `ttscale prm label` (no human labels)")
    return "automatic Monte-Carlo step labels from `ttscale prm label` (no human labels)"


def head_card(manifest: dict, evaluation: dict | None) -> str:
    """The Markdown card of a head."""
    lines = [*_intro(manifest), *_data_section(manifest), *_step_level_section(manifest),
             *_search_section((evaluation or {}).get("search")),
             "## Use",
             "",
             f"`--prm {manifest['name']}` with the model it was trained on; any other base "
             "model is refused (its GGUF fingerprint is checked).",
             ""]
    return "\n".join(lines)


def _intro(manifest: dict) -> list[str]:
    base = manifest["base_model"]
    hidden = manifest["head"]["hidden"]
    shape = f"an MLP with {hidden} hidden units" if hidden else "a linear layer"
    return [
        f"# {manifest['name']}",
        "",
        f"A process reward model for **{base['name']}** ({base['file']}, {base['parameters']:,}"
        f" parameters): a value head ({shape}) on the model's own final "
        "hidden state at the newline after each step. Trained by `ttscale prm train` on "
        f"{_label_source(manifest['label_method']['methods'])}.",
        "",
        f"Format: {manifest['format']}.",
        "",
    ]


def _data_section(manifest: dict) -> list[str]:
    data = manifest["data"]
    lines = [
        "## Data",
        "",
        "| labels | dataset | problems | with labelled steps | samples | rollouts | screen "
        "| max tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source in data["sources"]:
        settings = source.get("settings") or {}
        rollouts = ("none (exact)" if _exact(str(source.get("method", "")))
                    else settings.get("rollouts", "?"))
        lines.append(f"| {Path(source['labels']).name} | {source['dataset']} "
                     f"| {source['problems']} | {source['problems_with_labelled_steps']} "
                     f"| {settings.get('samples', '?')} | {rollouts} "
                     f"| {settings.get('screen', 0) or 'no'} "
                     f"| {settings.get('max_solution_tokens', '?')} |")
    methods = ", ".join(manifest["label_method"]["methods"])
    return lines + [
        "",
        f"Label: {manifest['label_method']['kind']} ({methods}). Problems were split, not "
        "steps: "
        f"{len(data['training_problems'])} for training, {len(data['validation_problems'])} "
        "held out for validation.",
        "",
    ]


def _step_level_section(manifest: dict) -> list[str]:
    valid = manifest["validation"]
    all_exact = all(_exact(m) for m in manifest["label_method"]["methods"])
    return [
        "## Step level (held-out validation problems)",
        "",
        ("| steps | problems | AUROC, step right | AUROC, label >= 0.5 "
         if all_exact else
         "| steps | problems | AUROC, any rollout correct | AUROC, success rate >= 0.5 ")
        + "| AUROC, last step's answer | BCE | BCE of the mean |",
        "|---|---|---|---|---|---|---|",
        f"| {valid['steps']} | {valid['problems']} | {_f(valid['auroc_hard'])} "
        f"| {_f(valid['auroc_soft_at_half'])} | {_f(valid['auroc_last_step_correct'])} "
        f"| {valid['bce']:.4f} | {valid['bce_of_the_mean']:.4f} |",
        "",
    ]


def _search_section(search: dict | None) -> list[str]:
    if not search:
        return []
    lines = [
        f"## Search on GSM8K test (problems {search['offset']}–"
        f"{search['offset'] + search['limit'] - 1}, N={search['budget']}, "
        f"M={search['width']})",
        "",
        "Accuracy with a 95 % bootstrap interval over problems; the difference to "
        "majority vote is paired by problem. Pass@N is the share of problems where one of "
        "the search's candidates was right: what a perfect verifier would have reached.",
        "",
        "| search | problems | accuracy | minus majority vote | pass@N |",
        "|---|---|---|---|---|",
    ]
    for row in search["rows"]:
        difference = row.get("minus_majority")
        reachable = row.get("pass_at_n")
        lines.append(f"| {row['search']} | {row['problems']} | {_pct(row['accuracy'])} "
                     f"| {_signed(difference) if difference else '—'} "
                     f"| {_pct(reachable) if reachable else '—'} |")
    return lines + ["", _verdict(search), ""]


def _verdict(search: dict) -> str:
    """One plain sentence on whether the head beats majority vote."""
    head_rows = [r for r in search["rows"] if r.get("minus_majority")
                 and r["scorer"] not in ("confidence", "none")]
    if not head_rows:
        return ""
    sentences = []
    for row in head_rows:
        d = row["minus_majority"]
        if d["low"] > 0:
            verdict = "beats majority vote (the interval excludes zero)"
        elif d["high"] < 0:
            verdict = "is worse than majority vote (the interval excludes zero)"
        else:
            verdict = ("does not beat majority vote: the difference's interval includes "
                       "zero")
        sentences.append(f"{row['search']} {verdict}.")
    return " ".join(sentences)


def write_card(folder: Path, evaluation_path: Path | None = None) -> Path:
    """Write ``folder/README.md``; with ``evaluation_path``, copy that ``eval.json`` into the
    folder first (it must be this head's evaluation)."""
    manifest = read_manifest(folder)
    evaluation = None
    if evaluation_path is not None:
        try:
            evaluation = json.loads(evaluation_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{evaluation_path} is not a readable eval.json ({exc})") from exc
        evaluated = (evaluation.get("manifest") or {}).get("validation")
        if evaluated != manifest.get("validation"):
            raise ConfigError(f"{evaluation_path} evaluates another head than {folder} (their "
                              "validation metrics differ); run `ttscale prm eval` on it")
        if evaluation_path.resolve() != (folder / EVAL_FILE).resolve():
            shutil.copyfile(evaluation_path, folder / EVAL_FILE)
    elif (folder / EVAL_FILE).exists():
        evaluation = json.loads((folder / EVAL_FILE).read_text(encoding="utf-8"))
    path = folder / CARD_FILE
    path.write_text(head_card(manifest, evaluation), encoding="utf-8")
    return path
