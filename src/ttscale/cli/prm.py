"""``ttscale prm label | train | eval | card | serve``: a PRM for your own policy, without human
labels, and a PRM served over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.console import console, fail, out, setup_logging
from ttscale.cli.options import (
    DEFAULT_HOST,
    ApiKeyOpt,
    HostOpt,
    ModelOpt,
    NCtxOpt,
    OffsetOpt,
    PrmDeviceOpt,
    PrmDtypeOpt,
    SeedOpt,
    TemperatureOpt,
    ThreadsOpt,
    VerboseOpt,
    WidthOpt,
    load_engine,
    prompt_format,
)
from ttscale.cli.parsing import parse_csv
from ttscale.cli.progress import counted, progress_display
from ttscale.errors import TTScaleError
from ttscale.prm_training.head import FitSettings
from ttscale.prm_training.labels import MONTE_CARLO, LabelSettings
from ttscale.prompts import PromptFormat
from ttscale.rewards import ScorerOptions
from ttscale.run.runner import DatasetSelection
from ttscale.settings import SearchSettings

LABEL_DATASET = "gsm8k_train"
LABEL_LIMIT = 200
LABEL_PARALLEL = 4
LABEL_CONTEXT = 8192  # a few short solutions per problem in flight
LABELS_DIR = Path("runs/prm-labels")
HEAD_DIR = Path("runs/prm-head")
HEAD_LABEL = "soft"
VALIDATION_SHARE = 0.2
EVAL_HEAD = "ttscale-smollm2"
EVAL_METHODS = "bon,beam"
EVAL_LIMIT = 100
EVAL_BUDGET = 16
EVAL_PARALLEL = 4
EVAL_CONTEXT = 16384
EVAL_DIR = Path("runs/prm-eval")
PRM_PORT = 8001  # beside a policy server on 8000


LabelDatasetOpt = Annotated[str, typer.Option(
    help="a training set: gsm8k_train, ladder_train, or a JSONL file of your own (test sets "
         "are refused)")]
LabelMethodOpt = Annotated[str, typer.Option(
    help="monte-carlo: label each step by rollouts from it (Math-Shepherd); exact: check "
         "each step against the problem's recorded intermediate quantities, no rollouts "
         "(problems with quantities only: --dataset ladder_train)")]
LabelLimitOpt = Annotated[int | None, typer.Option(help="problems to label")]
ReferenceStepsOpt = Annotated[int | None, typer.Option(
    help="only problems whose reference solution has at most this many steps (a weak "
         "policy learns values where it sometimes succeeds)")]
SamplesOpt = Annotated[int, typer.Option(help="solutions sampled per problem")]
ScreenOpt = Annotated[int, typer.Option(
    help="sample this many solutions first and skip problems none of them solves; the "
         "solutions to label are taken from them, correct and wrong (0: no screening)")]
RolloutsOpt = Annotated[int, typer.Option(
    help="completions per step prefix: the rollout budget behind each label "
         "(monte-carlo only)")]
LabelTokensOpt = Annotated[int, typer.Option(help="tokens per solution or rollout")]
LabelParallelOpt = Annotated[int, typer.Option(help="problems labelled at once")]
FolderOpt = Annotated[Path, typer.Option("--out")]


def label(
    dataset: LabelDatasetOpt = LABEL_DATASET,
    method: LabelMethodOpt = MONTE_CARLO,
    limit: LabelLimitOpt = LABEL_LIMIT,
    offset: OffsetOpt = DatasetSelection.offset,
    max_reference_steps: ReferenceStepsOpt = None,
    samples: SamplesOpt = LabelSettings.samples,
    screen: ScreenOpt = LabelSettings.screen,
    rollouts: RolloutsOpt = LabelSettings.rollouts,
    max_tokens: LabelTokensOpt = LabelSettings.max_solution_tokens,
    temperature: TemperatureOpt = LabelSettings.temperature,
    seed: SeedOpt = LabelSettings.seed,
    parallel: LabelParallelOpt = LABEL_PARALLEL,
    out_dir: FolderOpt = LABELS_DIR,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    n_ctx: NCtxOpt = LABEL_CONTEXT,
    verbose: VerboseOpt = False,
) -> None:
    """Label steps automatically (Math-Shepherd): sample solutions, roll out completions from
    each step, label the step by how often they reach the reference answer. With --method
    exact (on the ladder: --dataset ladder_train) each step is labelled right or wrong from
    the problem's recorded quantities instead, without rollouts. Resumable: rerun the same
    command to go on."""
    setup_logging(verbose)
    try:
        from ttscale.prm_training.labels import (
            check_label_method,
            check_training_split,
            label_dataset,
        )

        check_training_split(dataset)
        check_label_method(method, dataset)
        settings = LabelSettings(samples=samples, rollouts=rollouts, temperature=temperature,
                                 max_solution_tokens=max_tokens, seed=seed, screen=screen)
        policy = load_engine(model=model, n_ctx=n_ctx, threads=threads)
        with progress_display() as display:
            outcome = label_dataset(
                policy, prompt_format(PromptFormat.kind, None, policy), out_dir,
                dataset=dataset, limit=limit, offset=offset,
                max_reference_steps=max_reference_steps, settings=settings, parallel=parallel,
                method=method, progress=counted(display, "problems labelled"))
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    out.print(f"{outcome.labelled} problems labelled, {outcome.skipped} already done: "
              f"{outcome.out_dir}", highlight=False)
    if outcome.failures:
        for problem_id, message in outcome.failures:
            console.print(f"[red]not labelled[/] {problem_id}: {message}", highlight=False)
        raise typer.Exit(1)


def train(
    labels: Annotated[list[Path] | None, typer.Option(
        help="the --out folder of `ttscale prm label`; repeat it to train on several "
             "(default: runs/prm-labels)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="where the head and its manifest go")
                       ] = HEAD_DIR,
    name: Annotated[str | None, typer.Option(help="the head's name (default: value-head:OUT)")
                    ] = None,
    label_kind: Annotated[str, typer.Option("--label", help="soft (success rate) or hard "
                                                            "(any rollout correct)")
                          ] = HEAD_LABEL,
    hidden: Annotated[int, typer.Option(help="hidden units of the MLP head; 0: linear")] =
        FitSettings.hidden,
    validation: Annotated[float, typer.Option(help="share of problems held out")] =
        VALIDATION_SHARE,
    weight_decay: float = FitSettings.weight_decay,
    learning_rate: float = FitSettings.learning_rate,
    epochs: int = FitSettings.epochs,
    seed: int = FitSettings.seed,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Train a value head on the policy's hidden states at each step's end, from the labels of
    `ttscale prm label`, holding out a share of the problems for validation."""
    setup_logging(verbose)
    try:
        from ttscale.prm_training.train import train_value_head

        settings = FitSettings(hidden=hidden, learning_rate=learning_rate,
                               weight_decay=weight_decay, epochs=epochs, seed=seed)
        manifest = train_value_head(labels or [LABELS_DIR], out_dir,
                                    name=name or f"value-head:{out_dir}", model_path=model,
                                    validation=validation,
                                    label=label_kind, settings=settings, n_threads=threads)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    valid = manifest["validation"]
    out.print(f"head written to {out_dir} (use it with --prm value-head:{out_dir})\n"
              f"validation: {valid['steps']} steps of {valid['problems']} problems, AUROC "
              f"{_f(valid['auroc_hard'])} (hard labels), {_f(valid['auroc_soft_at_half'])}"
              f" (soft labels >= 0.5); BCE {valid['bce']:.4f} vs {valid['bce_of_the_mean']:.4f}"
              f" for the mean label", highlight=False)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def evaluate(
    head: Annotated[str, typer.Option(help="ttscale-smollm2 or value-head:FOLDER")
                    ] = EVAL_HEAD,
    labels: Annotated[Path | None, typer.Option(
        help="labels for the step-level AUROC (the head's training problems are left out)")
    ] = None,
    search: Annotated[bool, typer.Option(help="also run the GSM8K test searches")] = True,
    methods: Annotated[str, typer.Option(
        "--method", help="searches to compare, from bon, beam and dvts")] = EVAL_METHODS,
    limit: Annotated[int, typer.Option(help="GSM8K test problems for the searches")] =
        EVAL_LIMIT,
    offset: OffsetOpt = DatasetSelection.offset,
    n: Annotated[int, typer.Option("--n", help="budget N")] = EVAL_BUDGET,
    width: WidthOpt = SearchSettings.width,
    parallel: int = EVAL_PARALLEL,
    seed: SeedOpt = SearchSettings.seed,
    out_dir: FolderOpt = EVAL_DIR,
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Evaluate a value head: step AUROC on held-out labels, and Best-of-N / beam accuracy on
    GSM8K test with it, with the policy's confidence, and with majority vote."""
    setup_logging(verbose)
    try:
        from ttscale.prm_training.evaluate import evaluate as run_evaluation

        policy = (load_engine(model=model, n_ctx=EVAL_CONTEXT, threads=threads) if search
                  else None)
        result = run_evaluation(head, out_dir, labels=labels, policy=policy,
                                prompt=prompt_format(PromptFormat.kind, None, policy) if policy
                                else None, search=search, limit=limit, offset=offset,
                                methods=parse_csv(methods, "--method"),
                                budget=n, width=width, parallel=parallel, seed=seed)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    _print_evaluation(result)


def _interval(estimate: dict, signed: bool = False) -> str:
    """An estimate with its interval, e.g. ``0.050 [0.000, 0.125]``."""
    f = "+.3f" if signed else ".3f"
    return f"{estimate['value']:{f}} [{estimate['low']:{f}}, {estimate['high']:{f}}]"


def _print_evaluation(result: dict) -> None:
    from rich.table import Table

    if "steps" in result:
        s = result["steps"]
        out.print(f"step level, {s['steps']} held-out steps of {s['problems']} problems: "
                  f"AUROC {_f(s['auroc_hard'])} (hard labels), "
                  f"{_f(s['auroc_soft_at_half'])} (soft labels >= 0.5), "
                  f"{_f(s['auroc_last_step_correct'])} (last steps: answer correct)",
                  highlight=False)
    if "search" in result:
        search = result["search"]
        table = Table("search", "problems", "accuracy (95% CI)", "minus majority (95% CI)",
                      "pass@N (95% CI)",
                      title=f"GSM8K test, N={search['budget']}, M={search['width']}")
        for row in search["rows"]:
            d = row.get("minus_majority")
            table.add_row(row["search"], str(row["problems"]), _interval(row["accuracy"]),
                          "-" if d is None else _interval(d, signed=True),
                          _interval(row["pass_at_n"]))
        out.print(table)


def card(
    head: Annotated[Path, typer.Argument(help="the --out folder of `ttscale prm train`")],
    evaluation: Annotated[Path | None, typer.Option(
        "--eval", help="the eval.json of `ttscale prm eval` for this head (copied into the "
                       "folder)")] = None,
) -> None:
    """Write the head's README.md from its manifest and its evaluation: the step AUROC, and
    the search accuracy table against majority vote."""
    try:
        from ttscale.prm_training.card import write_card

        path = write_card(head, evaluation)
    except TTScaleError as error:
        fail(str(error))
    out.print(f"card written: {path}", highlight=False)


def prm_serve(
    prm: Annotated[str, typer.Option(help="FORMAT:PATH with FORMAT qwen-prm or math-shepherd "
                                          "and PATH a local checkpoint folder")],
    host: HostOpt = DEFAULT_HOST,
    port: int = PRM_PORT,
    api_key: ApiKeyOpt = None,
    served_model_name: Annotated[str | None, typer.Option(
        help="model name clients use (default: the checkpoint folder's name)")] = None,
    prm_device: PrmDeviceOpt = ScorerOptions.device,
    prm_dtype: PrmDtypeOpt = ScorerOptions.dtype,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
) -> None:
    """Serve a PRM checkpoint over vLLM's pooling API (POST /pooling), so that runs elsewhere
    can score with --prm http://HOST:PORT."""
    setup_logging(False)
    try:
        from ttscale.serve.prm_app import serve

        serve(prm, host=host, port=port, api_key=api_key, model_name=served_model_name,
              device=prm_device, dtype=prm_dtype, threads=threads)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
