"""``ttscale plan``: calibrate a plan on half a dataset, evaluate it on the other half, show a
plan, or write the paper's prior rules as one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.options import (
    BaseUrlOpt,
    DeviceOpt,
    DtypeOpt,
    EngineOpt,
    MethodBudgetsOpt,
    ModelOpt,
    ParamsOpt,
    PrmDeviceOpt,
    PrmDtypeOpt,
    PrmFormatOpt,
    PrmOpt,
    PrmParamsOpt,
    PromptOpt,
    TemplateOpt,
    ThreadsOpt,
    TrustOpt,
    console,
    fail,
    load_engine,
    out,
    parse_csv,
    parse_ints,
    parse_method_budgets,
    prompt_format,
    scorer_options,
    setup_logging,
    unescape,
)
from ttscale.errors import TTScaleError
from ttscale.planner.prior import RULES

plan_app = typer.Typer(
    help="The compute-optimal planner: calibrate a plan (method and budget per difficulty "
         "bin), evaluate it on held-out problems, or show the prior rules. " + RULES,
    no_args_is_help=True)

PlanPathOpt = Annotated[Path, typer.Option("--plan", help="a plan.json written by "
                                                          "`ttscale plan calibrate`")]


def _progress():
    """A rich progress display and a ``(label, done, total)`` callback that drives it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    display = Progress("[progress.description]{task.description}", BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    tasks: dict[str, int] = {}

    def advance(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = display.add_task(label, total=total)
        display.update(tasks[label], completed=done, total=total)

    return display, advance


def _load_models(invocation: dict):
    from ttscale.rewards import check_scorer_spec, load_scorer

    options = scorer_options(invocation["prm_device"], invocation["prm_dtype"],
                             invocation["prm_format"], invocation["trust_remote_code"],
                             invocation["prm_params"])
    check_scorer_spec(invocation["prm"], options)
    policy = load_engine(invocation["engine"], invocation["model"], invocation["base_url"],
                         invocation["params"], invocation["n_ctx"], invocation["threads"],
                         invocation["device"], invocation["dtype"],
                         invocation["trust_remote_code"])
    scorer = load_scorer(invocation["prm"], policy=policy, options=options)
    return policy, scorer, prompt_format(invocation["prompt"], invocation["chat_template"],
                                         policy)


@plan_app.command("calibrate")
def calibrate(
    out_dir: Annotated[Path, typer.Option("--out", help="study folder: plan.json, and the runs "
                                                        "under runs/ (resumable)")],
    dataset: Annotated[str, typer.Option(help="math500, aime24, gsm8k, gsm8k_train, ladder or "
                                              "a JSONL file")] = "gsm8k",
    limit: Annotated[int | None, typer.Option(help="at most this many problems (both halves)")
                     ] = None,
    offset: int = 0,
    ids: Annotated[str | None, typer.Option(help="comma-separated problem ids")] = None,
    levels: Annotated[str | None, typer.Option(
        help="levels (MATH's 1-5, the ladder's operations), e.g. 1,2")] = None,
    methods: Annotated[str, typer.Option("--methods", "--method",
                                         help="methods to measure")] = "majority,bon,beam,dvts",
    n: Annotated[str, typer.Option("--n", help="budgets to calibrate")] = "4,16,64",
    method_n: MethodBudgetsOpt = None,
    calibration_fraction: Annotated[float, typer.Option(
        help="share of the problems calibrated on; the rest is for `plan evaluate`")] = 0.5,
    split_seed: Annotated[int, typer.Option(help="seed of the calibration/evaluation split")
                          ] = 0,
    probe: Annotated[int, typer.Option(help="probe samples that predict a problem's bin at "
                                            "inference (counted in the budget)")] = 4,
    difficulty_samples: Annotated[int, typer.Option(
        help="samples per problem, at another seed, that estimate pass@1 for the true bins")
                                  ] = 16,
    bins: Annotated[str, typer.Option(help="absolute (the paper's easy > 50 %, medium "
                                           "10-50 %, hard < 10 % pass@1) or quantile:K")
                    ] = "absolute",
    min_problems: Annotated[int, typer.Option(help="fewest calibration problems a bin needs "
                                                   "before its choices replace the prior")] = 5,
    width: Annotated[int, typer.Option(help="beam width M")] = 4,
    prm: PrmOpt = "self",
    prm_device: PrmDeviceOpt = "cpu",
    prm_dtype: PrmDtypeOpt = "auto",
    prm_format: PrmFormatOpt = "qwen-prm",
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = False,
    step_agg: str = "last",
    answer_agg: str = "prm_vote",
    seed: int = 0,
    temperature: float = 0.7,
    top_p: float = 1.0,
    max_step_tokens: int = 2048,
    max_depth: int = 40,
    max_solution_tokens: int = 4096,
    step_delimiter: str | None = None,
    engine: EngineOpt = "llama.cpp",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    params: ParamsOpt = None,
    n_ctx: int = 32768,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "auto",
    prompt: PromptOpt = "fewshot",
    chat_template: TemplateOpt = None,
    verbose: bool = False,
) -> None:
    """Measure every method × budget on the calibration half, bin its problems by pass@1, and
    write the plan: per bin and budget the most accurate method (the cheapest on a tie), with
    the accuracy, interval and FLOPs behind it. Rerun the same command to resume."""
    setup_logging(verbose)
    try:
        from ttscale.rewards import canonical_spec
        from ttscale.run.calibrate import StudyConfig
        from ttscale.run.calibrate import calibrate as run_calibration
        from ttscale.run.runner import DatasetSelection
        from ttscale.settings import SearchSettings

        settings = SearchSettings(
            temperature=temperature, top_p=top_p, max_step_tokens=max_step_tokens,
            max_depth=max_depth, max_solution_tokens=max_solution_tokens, width=width,
            step_aggregation=step_agg, answer_aggregation=answer_agg,  # type: ignore[arg-type]
            step_delimiter=unescape(step_delimiter), seed=seed)
        selection = DatasetSelection(name=dataset, ids=parse_csv(ids, "--ids") if ids else None,
                                     levels=parse_ints(levels, "--levels") if levels else None,
                                     limit=limit, offset=offset)
        study = StudyConfig(
            dataset=selection, methods=parse_csv(methods, "--methods"),
            budgets=parse_ints(n, "--n"), method_budgets=parse_method_budgets(method_n),
            scorer=canonical_spec(prm), settings=settings,
            calibration_fraction=calibration_fraction, split_seed=split_seed,
            probe_size=probe, difficulty_samples=difficulty_samples, bins=bins,
            min_problems=min_problems)
        study.split()  # bad dataset input fails before a model loads
        invocation = {"engine": engine, "model": model, "base_url": base_url, "params": params,
                      "n_ctx": n_ctx, "threads": threads, "device": device, "dtype": dtype,
                      "trust_remote_code": trust_remote_code, "prompt": prompt,
                      "chat_template": chat_template, "prm": prm, "prm_device": prm_device,
                      "prm_dtype": prm_dtype, "prm_format": prm_format,
                      "prm_params": prm_params}
        policy, scorer, chosen_prompt = _load_models(invocation)
        display, advance = _progress()
        with display:
            plan = asyncio.run(run_calibration(study, policy, scorer, chosen_prompt, out_dir,
                                               advance, invocation=invocation))
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    _print_plan(plan, out_dir / "plan.json")


@plan_app.command("evaluate")
def evaluate(
    plan_path: PlanPathOpt,
    budgets: Annotated[str | None, typer.Option(help="budgets to compare (default: the "
                                                     "plan's)")] = None,
    replay_only: Annotated[bool, typer.Option(
        help="compare from the records already on disk; run nothing")] = False,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    threads: ThreadsOpt = None,
    verbose: bool = False,
) -> None:
    """Run the plan's methods × budgets on the problems it was not calibrated on (the study's
    evaluation half, resumable), and compare the planner — with predicted bins, with true
    bins, and the prior rules — to every fixed method at each budget: accuracy with bootstrap
    intervals, FLOPs, and the FLOPs each needs to reach Best-of-N's accuracy at the largest
    budget. Writes evaluation.json and evaluation.md beside the plan."""
    setup_logging(verbose)
    try:
        from ttscale.planner import load_plan
        from ttscale.planner.auto import plan_warnings
        from ttscale.planner.evaluate import evaluate_plan, markdown
        from ttscale.records import write_json_atomic
        from ttscale.rewards import canonical_spec
        from ttscale.run.calibrate import StudyConfig, read_half, run_half

        plan = load_plan(plan_path)
        if plan.source != "calibrated" or "study" not in plan.info:
            raise ValueError(f"{plan_path} is not a calibrated plan; evaluate the plan that "
                             "`ttscale plan calibrate` wrote")
        study = StudyConfig.from_dict(plan.info["study"])
        out_dir = plan_path.parent
        evaluation_ids = list(plan.info.get("evaluation_problems", ()))
        overlap = set(evaluation_ids) & set(plan.info.get("calibration_problems", ()))
        if overlap or not evaluation_ids:
            raise ValueError(f"{plan_path} names {len(evaluation_ids)} evaluation problems, "
                             f"{len(overlap)} of them also calibration problems; calibrate "
                             "again with a calibration fraction below 1")
        if not replay_only:
            invocation = dict(plan.info["invocation"])
            for key, value in (("model", model), ("base_url", base_url),
                               ("threads", threads)):
                if value is not None:
                    invocation[key] = value
            policy, scorer, chosen_prompt = _load_models(invocation)
            mismatch = plan_warnings(plan, policy.info.name, policy.info.parameters,
                                     canonical_spec(invocation["prm"]))
            if mismatch:
                raise ValueError(mismatch[0].replace("; the prior rules decide", "") +
                                 ": evaluate with the policy and scorer it was calibrated for")
            display, advance = _progress()
            with display:
                asyncio.run(run_half(study, "evaluation", evaluation_ids, policy, scorer,
                                     chosen_prompt, out_dir, advance))
        outcomes, pass_rates = read_half(out_dir, "evaluation", evaluation_ids,
                                         plan.probe_size)
        result = evaluate_plan(plan, outcomes, pass_rates,
                               parse_ints(budgets, "--budgets") if budgets else None)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    title = (f"Planner evaluation: {plan.policy.get('name')}, scorer {plan.scorer}, "
             f"{plan.dataset}")
    text = markdown(result, title)
    write_json_atomic(out_dir / "evaluation.json", {"title": title, **result.to_dict()})
    (out_dir / "evaluation.md").write_text(text, encoding="utf-8")
    from rich.markdown import Markdown

    out.print(Markdown(text))
    out.print(f"written: {out_dir / 'evaluation.json'}, {out_dir / 'evaluation.md'}",
              highlight=False)


@plan_app.command("show")
def show(plan_path: Annotated[Path, typer.Argument(help="a plan.json")]) -> None:
    """Print a plan: the choice per bin and budget, with the accuracy and FLOPs behind it."""
    try:
        from ttscale.planner import load_plan

        plan = load_plan(plan_path)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    _print_plan(plan, plan_path)


@plan_app.command("prior")
def prior(
    params: Annotated[float | None, typer.Option(
        "--params", help="policy parameter count (e.g. 1.5e9); default: read from the model")
                      ] = None,
    model: ModelOpt = None,
    engine: EngineOpt = "llama.cpp",
    base_url: BaseUrlOpt = None,
    dataset: Annotated[str | None, typer.Option(help="aime24 selects the rules for AIME-like "
                                                     "hard sets")] = None,
    width: int = 4,
    probe: int = 4,
    out_path: Annotated[Path | None, typer.Option("--out", help="also write it as a plan "
                                                                "file")] = None,
) -> None:
    """The paper's prior rules for a policy (without calibration), per difficulty bin."""
    try:
        from ttscale.planner import prior_plan

        name = model or "policy"
        if params is None:
            policy = load_engine(engine, model, base_url, None)
            params, name = policy.info.parameters, policy.info.name
        plan = prior_plan(int(params) if params else None, name, None, width, probe, dataset)
        for bin_name in plan.binning.names:  # fails early on an unknown size
            plan.decide(bin_name, 16, parameters=plan.policy["parameters"], model_name=name)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    if out_path is not None:
        plan.save(out_path)
    _print_plan(plan, out_path)


def _print_plan(plan, path: Path | None) -> None:
    from rich.table import Table

    from ttscale.compute import format_flops

    policy = plan.policy
    billions = (f"{policy['parameters'] / 1e9:.2f}B" if policy.get("parameters")
                else "unknown size")
    title = f"{plan.source} plan for {policy.get('name')} ({billions}), scorer {plan.scorer}"
    predictor = plan.predictor
    fitted = plan.info.get("predictor_accuracy_on_calibration")
    table = Table(title=title, caption=RULES if plan.source == "prior" else (
        f"probe: {plan.probe_size} samples; bin predicted from {predictor.weight:g} × "
        f"agreement + {1 - predictor.weight:g} × score, thresholds "
        f"{', '.join(f'{t:.3g}' for t in predictor.thresholds)}"
        + ("" if fitted is None else f" ({fitted:.0%} right on the calibration problems)")))
    ranges = plan.binning.describe()
    if plan.source == "prior":
        table.add_column("bin")
        table.add_column("method")
        table.add_column("rule")
        for name in plan.binning.names:
            decision = plan.decide(name, 16, parameters=policy.get("parameters"),
                                   model_name=policy.get("name") or "")
            table.add_row(f"{name} ({ranges[name]})", decision.method, decision.reason)
    else:
        table.add_column("bin")
        table.add_column("problems", justify="right")
        for budget in plan.budgets:
            table.add_column(f"budget {budget}")
        counts = plan.info.get("bin_counts", {})
        for name in plan.binning.names:
            cells = []
            for budget in plan.budgets:
                choice = plan.choices.get(name, {}).get(budget)
                if name in plan.fallbacks:
                    cells.append("prior rules")
                elif choice is None:
                    cells.append("-")
                else:
                    best = choice.candidates[0]
                    cells.append(f"{choice.method}@{choice.n}: {best.accuracy:.0%} "
                                 f"[{best.low:.0%}, {best.high:.0%}], {format_flops(best.flops)}")
            table.add_row(f"{name} ({ranges[name]})", str(counts.get(name, "")), *cells)
    out.print(table)
    for name, why in plan.fallbacks.items():
        out.print(f"bin {name}: {why}; the prior rules decide there", highlight=False)
    if path is not None:
        out.print(f"plan: {path}", highlight=False)

