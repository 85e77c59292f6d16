"""``ttscale plan``: calibrate a plan on half a dataset, evaluate it on the other half, show a
plan, or write the paper's prior rules as one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.console import fail, out, setup_logging
from ttscale.cli.options import (
    DEFAULT_PRM,
    AnswerAggOpt,
    BaseUrlOpt,
    ConfigOpt,
    DatasetOpt,
    DeviceOpt,
    DtypeOpt,
    EngineOpt,
    IdsOpt,
    LevelsOpt,
    LimitOpt,
    MaxDepthOpt,
    MaxSolutionTokensOpt,
    MaxStepTokensOpt,
    MethodBudgetsOpt,
    ModelOpt,
    NCtxOpt,
    OffsetOpt,
    ParamsOpt,
    ParticleTemperatureOpt,
    PrmDeviceOpt,
    PrmDtypeOpt,
    PrmFormatOpt,
    PrmOpt,
    PrmParamsOpt,
    PromptOpt,
    SeedOpt,
    StepAggOpt,
    StepDelimiterOpt,
    TemperatureOpt,
    TemplateOpt,
    ThinkingOpt,
    ThreadsOpt,
    TopPOpt,
    TrustOpt,
    VerboseOpt,
    WidthOpt,
    dataset_selection,
    engine_spec,
    from_options,
    load_engine,
    prompt_format,
    scorer_options,
    search_settings,
)
from ttscale.cli.parsing import (
    CommaList,
    as_text,
    parse_csv,
    parse_ints,
    parse_method_budgets,
)
from ttscale.cli.plan_table import SHOWN_BUDGET, print_plan
from ttscale.cli.progress import labelled, progress_display
from ttscale.engines import EngineSpec
from ttscale.errors import TTScaleError
from ttscale.prompts import PromptFormat
from ttscale.records import MANIFEST_FILE
from ttscale.rewards import ScorerOptions
from ttscale.run.calibrate import StudyConfig
from ttscale.run.runner import DatasetSelection
from ttscale.settings import SearchSettings

# the options a study keeps in its plan, so that `plan evaluate` loads the same models
INVOCATION = ("engine", "model", "base_url", "params", "n_ctx", "threads", "device", "dtype",
              "trust_remote_code", "prompt", "chat_template", "thinking", "prm", "prm_device",
              "prm_dtype", "prm_format", "prm_params")

logger = logging.getLogger(__name__)

STUDY_METHODS = as_text(StudyConfig.methods)
STUDY_BUDGETS = as_text(StudyConfig.budgets)
PlanPathOpt = Annotated[Path, typer.Option("--plan", help="a plan.json written by "
                                                          "`ttscale plan calibrate`")]
StudyMethodsOpt = Annotated[str, typer.Option("--methods", "--method",
                                              help="methods to measure"), CommaList(str)]
StudyBudgetsOpt = Annotated[str, typer.Option("--n", help="budgets to calibrate"),
                            CommaList(int)]
StudyOutOpt = Annotated[Path, typer.Option("--out", help="study folder: plan.json, and the runs "
                                                         "under runs/ (resumable)")]
CalibrationFractionOpt = Annotated[float, typer.Option(
    help="share of the problems calibrated on; the rest is for `plan evaluate`")]
SplitSeedOpt = Annotated[int, typer.Option(help="seed of the calibration/evaluation split")]
ProbeOpt = Annotated[int, typer.Option(help="probe samples that predict a problem's bin at "
                                            "inference (counted in the budget)")]
DifficultySamplesOpt = Annotated[int, typer.Option(
    help="samples per problem, at another seed, that estimate pass@1 for the true bins")]
BinsOpt = Annotated[str, typer.Option(help="absolute (the paper's easy > 50 %, medium "
                                           "10-50 %, hard < 10 % pass@1) or quantile:K")]
MinProblemsOpt = Annotated[int, typer.Option(help="fewest calibration problems a bin needs "
                                                  "before its choices replace the prior")]
ImportRunsOpt = Annotated[list[Path] | None, typer.Option(
    "--import-runs", help="a `ttscale run` folder of the same policy, prompt and dataset whose "
                          "records of the study's methods and budgets are copied in instead "
                          "of run again (repeat for more folders)")]


def calibrate(
    out_dir: StudyOutOpt,
    config: ConfigOpt = None,
    dataset: DatasetOpt = DatasetSelection.name,
    limit: LimitOpt = None,
    offset: OffsetOpt = DatasetSelection.offset,
    ids: IdsOpt = None,
    levels: LevelsOpt = None,
    methods: StudyMethodsOpt = STUDY_METHODS,
    n: StudyBudgetsOpt = STUDY_BUDGETS,
    method_n: MethodBudgetsOpt = None,
    calibration_fraction: CalibrationFractionOpt = StudyConfig.calibration_fraction,
    split_seed: SplitSeedOpt = StudyConfig.split_seed,
    probe: ProbeOpt = StudyConfig.probe_size,
    difficulty_samples: DifficultySamplesOpt = StudyConfig.difficulty_samples,
    bins: BinsOpt = StudyConfig.bins,
    min_problems: MinProblemsOpt = StudyConfig.min_problems,
    import_runs: ImportRunsOpt = None,
    thinking_budgets: Annotated[str | None, typer.Option(
        help="a reasoning policy: also measure the whole-solution methods with their thoughts "
             "cut at each of these budgets (tokens), as options method+thinkB")] = None,
    width: WidthOpt = SearchSettings.width,
    prm: PrmOpt = DEFAULT_PRM,
    prm_device: PrmDeviceOpt = ScorerOptions.device,
    prm_dtype: PrmDtypeOpt = ScorerOptions.dtype,
    prm_format: PrmFormatOpt = ScorerOptions.http_format,
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = EngineSpec.trust_remote_code,
    step_agg: StepAggOpt = SearchSettings.step_aggregation,
    answer_agg: AnswerAggOpt = SearchSettings.answer_aggregation,
    seed: SeedOpt = SearchSettings.seed,
    temperature: TemperatureOpt = SearchSettings.temperature,
    top_p: TopPOpt = SearchSettings.top_p,
    max_step_tokens: MaxStepTokensOpt = SearchSettings.max_step_tokens,
    max_depth: MaxDepthOpt = SearchSettings.max_depth,
    max_solution_tokens: MaxSolutionTokensOpt = SearchSettings.max_solution_tokens,
    step_delimiter: StepDelimiterOpt = None,
    particle_temperature: ParticleTemperatureOpt = SearchSettings.particle_temperature,
    engine: EngineOpt = EngineSpec.kind,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    params: ParamsOpt = None,
    n_ctx: NCtxOpt = EngineSpec.n_ctx,
    threads: ThreadsOpt = None,
    device: DeviceOpt = EngineSpec.device,
    dtype: DtypeOpt = EngineSpec.dtype,
    prompt: PromptOpt = PromptFormat.kind,
    chat_template: TemplateOpt = None,
    thinking: ThinkingOpt = PromptFormat.thinking,
    verbose: VerboseOpt = False,
) -> None:
    """Measure every method × budget on the calibration half, bin its problems by pass@1, and
    write the plan: per bin and budget the most accurate method (the cheapest on a tie), with
    the accuracy, interval and FLOPs behind it. Rerun the same command to resume."""
    setup_logging(verbose)
    try:
        plan = _calibrate(dict(locals()))  # every option by name
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    print_plan(plan, out_dir / "plan.json")


def _calibrate(options: dict):
    """The plan a study writes, its runs resumed from the study folder."""
    from ttscale.run.calibrate import calibrate as run_calibration
    from ttscale.run.import_runs import check_sources

    study = _study(options)
    study.split()  # bad dataset input fails before a model loads
    imports = [path.resolve() for path in options["import_runs"] or ()]
    check_sources(imports)
    invocation = {key: options[key] for key in INVOCATION}
    policy, scorer, chosen_prompt = _load_models(invocation)
    with progress_display() as display:
        return asyncio.run(run_calibration(study, policy, scorer, chosen_prompt,
                                           options["out_dir"], labelled(display),
                                           invocation=invocation, imports=imports))


def _study(options: dict) -> StudyConfig:
    from ttscale.rewards import canonical_spec

    settings = from_options(search_settings, options)
    selection = from_options(dataset_selection, options)
    return StudyConfig(
        dataset=selection, methods=parse_csv(options["methods"], "--methods"),
        budgets=parse_ints(options["n"], "--n"),
        method_budgets=parse_method_budgets(options["method_n"]),
        scorer=canonical_spec(options["prm"]), settings=settings,
        calibration_fraction=options["calibration_fraction"],
        split_seed=options["split_seed"], probe_size=options["probe"],
        difficulty_samples=options["difficulty_samples"], bins=options["bins"],
        min_problems=options["min_problems"],
        thinking_budgets=(parse_ints(options["thinking_budgets"], "--thinking-budgets")
                          if options["thinking_budgets"] else ()))


def _load_models(invocation: dict):
    """(policy, scorer, prompt) of the options a study keeps."""
    from ttscale.engines import load_policy
    from ttscale.rewards import check_scorer_spec, load_scorer

    scoring = from_options(scorer_options, invocation)
    check_scorer_spec(invocation["prm"], scoring)
    policy = load_policy(from_options(engine_spec, invocation))
    scorer = load_scorer(invocation["prm"], policy=policy, options=scoring)
    # plans calibrated before the thinking modes read as auto
    return policy, scorer, prompt_format(invocation["prompt"], invocation["chat_template"],
                                         policy, invocation.get("thinking", "auto"))


def evaluate(
    plan_path: PlanPathOpt,
    budgets: Annotated[str | None, typer.Option(help="budgets to compare (default: the "
                                                     "plan's)")] = None,
    replay_only: Annotated[bool, typer.Option(
        help="compare from the records already on disk; run nothing")] = False,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    threads: ThreadsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the plan's methods × budgets on the problems it was not calibrated on (the study's
    evaluation half, resumable), and compare the planner — with predicted bins, with true
    bins, and the prior rules — to every fixed method at each budget: accuracy with bootstrap
    intervals, FLOPs, and the FLOPs each needs to reach Best-of-N's accuracy at the largest
    budget. Writes evaluation.json and evaluation.md beside the plan."""
    setup_logging(verbose)
    try:
        from ttscale.planner.evaluate import evaluate_plan
        from ttscale.run.calibrate import read_half

        plan, study, evaluation_ids = _calibrated_plan(plan_path)
        out_dir = plan_path.parent
        if not replay_only:
            overrides = {"model": model, "base_url": base_url, "threads": threads}
            _run_evaluation_half(plan, study, evaluation_ids, out_dir, overrides)
        outcomes, pass_rates = read_half(out_dir, "evaluation", evaluation_ids,
                                         plan.probe_size, study.thinking_budgets)
        result = evaluate_plan(plan, outcomes, pass_rates,
                               parse_ints(budgets, "--budgets") if budgets else None)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    _write_evaluation(plan, result, out_dir)


def _calibrated_plan(plan_path: Path):
    """(plan, study, evaluation problem ids) of a plan that `plan calibrate` wrote."""
    from ttscale.planner import load_plan

    plan = load_plan(plan_path)
    if plan.source != "calibrated" or "study" not in plan.info:
        raise ValueError(f"{plan_path} is not a calibrated plan; evaluate the plan that "
                         "`ttscale plan calibrate` wrote")
    study = StudyConfig.from_dict(plan.info["study"])
    evaluation_ids = list(plan.info.get("evaluation_problems", ()))
    overlap = set(evaluation_ids) & set(plan.info.get("calibration_problems", ()))
    if overlap or not evaluation_ids:
        raise ValueError(f"{plan_path} names {len(evaluation_ids)} evaluation problems, "
                         f"{len(overlap)} of them also calibration problems; calibrate "
                         "again with a calibration fraction below 1")
    return plan, study, evaluation_ids


def _run_evaluation_half(plan, study, evaluation_ids: list[str], out_dir: Path,
                         overrides: dict) -> None:
    """Run the evaluation half with the models the study used (or those the options name)."""
    from ttscale.planner.auto import plan_warnings
    from ttscale.rewards import canonical_spec
    from ttscale.run.calibrate import run_half

    invocation = dict(plan.info["invocation"])
    invocation.update({key: value for key, value in overrides.items() if value is not None})
    policy, scorer, chosen_prompt = _load_models(invocation)
    mismatch = plan_warnings(plan, policy.info.name, policy.info.parameters,
                             canonical_spec(invocation["prm"]))
    if mismatch:
        raise ValueError(mismatch[0].replace("; the prior rules decide", "") +
                         ": evaluate with the policy and scorer it was calibrated for")
    imports = []
    for source in map(Path, plan.info.get("imports", ())):
        if (source / MANIFEST_FILE).exists():
            imports.append(source)
        else:  # the evaluation then runs what the study folder lacks
            logger.warning("%s, a run folder the plan was calibrated with, is gone: its "
                           "records of the evaluation half are not imported", source)
    with progress_display() as display:
        asyncio.run(run_half(study, "evaluation", evaluation_ids, policy, scorer,
                             chosen_prompt, out_dir, labelled(display), imports))


def _write_evaluation(plan, result, out_dir: Path) -> None:
    from rich.markdown import Markdown

    from ttscale.planner.evaluate import markdown
    from ttscale.records import write_json_atomic

    title = (f"Planner evaluation: {plan.policy.get('name')}, scorer {plan.scorer}, "
             f"{plan.dataset}")
    text = markdown(result, title)
    write_json_atomic(out_dir / "evaluation.json", {"title": title, **result.to_dict()})
    (out_dir / "evaluation.md").write_text(text, encoding="utf-8")
    out.print(Markdown(text))
    out.print(f"written: {out_dir / 'evaluation.json'}, {out_dir / 'evaluation.md'}",
              highlight=False)


def show(plan_path: Annotated[Path, typer.Argument(help="a plan.json")]) -> None:
    """Print a plan: the choice per bin and budget, with the accuracy and FLOPs behind it."""
    try:
        from ttscale.planner import load_plan

        plan = load_plan(plan_path)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    print_plan(plan, plan_path)


def prior(
    params: Annotated[float | None, typer.Option(
        "--params", help="policy parameter count (e.g. 1.5e9); default: read from the model")
                      ] = None,
    model: ModelOpt = None,
    engine: EngineOpt = EngineSpec.kind,
    base_url: BaseUrlOpt = None,
    dataset: Annotated[str | None, typer.Option(help="aime24 selects the rules for AIME-like "
                                                     "hard sets")] = None,
    width: WidthOpt = SearchSettings.width,
    probe: ProbeOpt = StudyConfig.probe_size,
    out_path: Annotated[Path | None, typer.Option("--out", help="also write it as a plan "
                                                                "file")] = None,
) -> None:
    """The paper's prior rules for a policy (without calibration), per difficulty bin."""
    try:
        from ttscale.planner import prior_plan

        name = model or "policy"
        if params is None:
            policy = load_engine(engine=engine, model=model, base_url=base_url)
            params, name = policy.info.parameters, policy.info.name
        plan = prior_plan(int(params) if params else None, name, None, width, probe, dataset)
        for bin_name in plan.binning.names:  # fails early on an unknown size
            plan.decide(bin_name, SHOWN_BUDGET, parameters=plan.policy["parameters"],
                        model_name=name)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    if out_path is not None:
        plan.save(out_path)
    print_plan(plan, out_path)
