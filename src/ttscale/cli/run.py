"""``ttscale run``: methods × budgets over a dataset, here or on Ray actors; resumable."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.console import fail, setup_logging
from ttscale.cli.options import (
    DEFAULT_PRM,
    AnswerAggOpt,
    BaseUrlOpt,
    BudgetsOpt,
    ConcurrencyOpt,
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
    MethodsOpt,
    ModelOpt,
    NCtxOpt,
    OffsetOpt,
    ParallelOpt,
    ParamsOpt,
    ParticleTemperatureOpt,
    PrmDeviceOpt,
    PrmDtypeOpt,
    PrmFormatOpt,
    PrmOpt,
    PrmParamsOpt,
    ProbeAgreementOpt,
    ProbeEveryOpt,
    PromptOpt,
    SamplingOpt,
    SeedOpt,
    ShuffleSeedOpt,
    StepAggOpt,
    StepDelimiterOpt,
    TemperatureOpt,
    TemplateOpt,
    ThinkingBudgetOpt,
    ThinkingOpt,
    ThreadsOpt,
    TopPOpt,
    TrustOpt,
    VerboseOpt,
    WidthOpt,
    dataset_selection,
    engine_spec,
    from_options,
    prompt_format,
    recipe_of,
    scorer_options,
    search_settings,
    with_sampling_preset,
)
from ttscale.cli.parsing import as_text, parse_csv, parse_ints, parse_method_budgets
from ttscale.cli.progress import run_on_ray_with_progress, run_with_progress
from ttscale.cli.summary import print_summary
from ttscale.engines import EngineSpec
from ttscale.errors import TTScaleError
from ttscale.planner.auto import AUTO
from ttscale.planner.plan import Plan
from ttscale.prompts import PromptFormat
from ttscale.rewards import ScorerOptions
from ttscale.run.distributed import RayCluster
from ttscale.run.runner import DEFAULT_PARALLEL, DatasetSelection, RunConfig
from ttscale.settings import SearchSettings

DEFAULT_METHODS = as_text(RunConfig.methods)
DEFAULT_BUDGETS = as_text(RunConfig.budgets)
PlanOpt = Annotated[Path | None, typer.Option(
    help="plan file for --method auto (from `ttscale plan calibrate`); without one, auto "
         "follows the paper's prior rules for the policy's size (`ttscale plan prior`)")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="run folder (default: one named "
                                                           "after the settings)")]
RayOpt = Annotated[bool, typer.Option(
    "--ray", help="run on Ray actors (extra ray): the cluster at --ray-address or "
                  "RAY_ADDRESS, else a local Ray; each actor loads the engine and scorer "
                  "and takes --parallel problems at a time", rich_help_panel="Ray")]
RayAddressOpt = Annotated[str | None, typer.Option(
    help="Ray cluster address, e.g. ray://head:10001 or auto", rich_help_panel="Ray")]
ActorsOpt = Annotated[int, typer.Option(help="Ray actors, each with its own engine",
                                        rich_help_panel="Ray")]
CpusOpt = Annotated[float, typer.Option(
    help="CPUs each actor reserves (llama.cpp uses as many threads)", rich_help_panel="Ray")]
GpusOpt = Annotated[float, typer.Option(
    help="GPUs each actor reserves (1 for a vLLM or hf engine on its own GPU)",
    rich_help_panel="Ray")]


def run(
    ctx: typer.Context,
    config: ConfigOpt = None,
    dataset: DatasetOpt = DatasetSelection.name,
    method: MethodsOpt = DEFAULT_METHODS,
    n: BudgetsOpt = DEFAULT_BUDGETS,
    method_n: MethodBudgetsOpt = None,
    plan: PlanOpt = None,
    width: WidthOpt = SearchSettings.width,
    prm: PrmOpt = DEFAULT_PRM,
    prm_device: PrmDeviceOpt = ScorerOptions.device,
    prm_dtype: PrmDtypeOpt = ScorerOptions.dtype,
    prm_format: PrmFormatOpt = ScorerOptions.http_format,
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = EngineSpec.trust_remote_code,
    step_agg: StepAggOpt = SearchSettings.step_aggregation,
    answer_agg: AnswerAggOpt = SearchSettings.answer_aggregation,
    limit: LimitOpt = None,
    offset: OffsetOpt = DatasetSelection.offset,
    ids: IdsOpt = None,
    levels: LevelsOpt = None,
    shuffle_seed: ShuffleSeedOpt = None,
    seed: SeedOpt = SearchSettings.seed,
    temperature: TemperatureOpt = SearchSettings.temperature,
    top_p: TopPOpt = SearchSettings.top_p,
    sampling: SamplingOpt = None,
    max_step_tokens: MaxStepTokensOpt = SearchSettings.max_step_tokens,
    max_depth: MaxDepthOpt = SearchSettings.max_depth,
    max_solution_tokens: MaxSolutionTokensOpt = SearchSettings.max_solution_tokens,
    step_delimiter: StepDelimiterOpt = None,
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
    thinking_budget: ThinkingBudgetOpt = SearchSettings.thinking_budget,
    probe_every: ProbeEveryOpt = SearchSettings.probe_every,
    probe_agreement: ProbeAgreementOpt = SearchSettings.probe_agreement,
    particle_temperature: ParticleTemperatureOpt = SearchSettings.particle_temperature,
    parallel: ParallelOpt = DEFAULT_PARALLEL,
    concurrency: ConcurrencyOpt = EngineSpec.concurrency,
    out_dir: OutOpt = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = RayCluster.actors,
    cpus_per_actor: CpusOpt = RayCluster.cpus_per_actor,
    gpus_per_actor: GpusOpt = RayCluster.gpus_per_actor,
    verbose: VerboseOpt = False,
) -> None:
    """Run methods × budgets over a dataset; resumable (rerun the same command to finish)."""
    setup_logging(verbose)
    options = dict(locals())  # every option by name: each block's builder takes its own
    try:
        job = prepare_run(options)
        outcome, model_name = execute_run(job, options)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    print_summary(outcome, job.config, f"{dataset}: {model_name}, scorer {job.scorer}")


@dataclass(frozen=True)
class RunJob:
    """A checked run: what to run, with which scorer, plan and engine."""

    config: RunConfig
    scorer: str  # the scorer spec as records store it
    scoring: ScorerOptions
    plan: Plan | None  # for --method auto
    engine: EngineSpec


def prepare_run(options: dict) -> RunJob:
    """The run's settings from its options, checked before any model loads."""
    from ttscale.rewards import canonical_spec, check_scorer_spec

    scorer = canonical_spec(options["prm"])
    scoring = from_options(scorer_options, options)
    settings = from_options(search_settings, with_sampling_preset(options))
    selection = from_options(dataset_selection, options)
    config = RunConfig(dataset=selection, methods=parse_csv(options["method"], "--method"),
                       budgets=parse_ints(options["n"], "--n"), scorer=scorer,
                       settings=settings, method_budgets=parse_method_budgets(options["method_n"]))
    plan = _load_plan(options["plan"], config)
    selection.load()  # bad dataset input fails before a model is loaded
    check_scorer_spec(scorer, scoring)  # so does a PRM of the wrong format
    if options["parallel"] < 1 or options["concurrency"] < 1:
        raise ValueError("--parallel and --concurrency must be at least 1")
    return RunJob(config, scorer, scoring, plan, from_options(engine_spec, options))


def execute_run(job: RunJob, options: dict):
    """(outcome, model name) of the run, here or on Ray; a recipe it came from is left in the
    run folder."""
    execute = partial(_run_on_ray if options["ray"] else _run_here, job)
    outcome, model_name = from_options(execute, options)
    recipe = recipe_of(options["ctx"])
    if recipe is not None:
        recipe.save(outcome.run_dir)
    return outcome, model_name


def _load_plan(path: Path | None, config: RunConfig) -> Plan | None:
    if path is None:
        return None
    from ttscale.planner import load_plan

    if AUTO not in config.methods:
        raise ValueError("--plan is read by --method auto only; add auto to --method")
    return load_plan(path)


def _default_run_dir(config: RunConfig, model_name: str, plan: Plan | None = None) -> Path:
    """Runs of the same command land in the same folder, so rerunning it resumes (locally
    or on Ray alike)."""
    identity = json.dumps({"config": {**asdict(config), "settings": config.settings.identity()},
                           "model": model_name,
                           **({"plan": plan.identity} if plan is not None else {})},
                          sort_keys=True, default=str)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return Path("runs") / f"{config.dataset.name}-{'-'.join(config.methods)}-{digest}"


def _run_here(job: RunJob, *, prompt: str, chat_template: str | None, thinking: str,
              out_dir: Path | None, parallel: int):
    """(outcome, model name) of the run in this process."""
    from ttscale.engines import load_policy
    from ttscale.rewards import load_scorer

    policy = load_policy(job.engine)
    scorer = load_scorer(job.scorer, policy=policy, options=job.scoring)
    chosen_prompt = prompt_format(prompt, chat_template, policy, thinking)
    run_dir = out_dir or _default_run_dir(job.config, policy.info.name, job.plan)
    outcome = run_with_progress(job.config, policy, scorer, run_dir, chosen_prompt, job.plan,
                                parallel)
    return outcome, policy.info.name


def _run_on_ray(job: RunJob, *, prompt: str, chat_template: str | None, thinking: str,
                out_dir: Path | None,
                parallel: int, ray_address: str | None, actors: int, cpus_per_actor: float,
                gpus_per_actor: float):
    """(outcome, model name) of the run on Ray actors, each loading the engine and scorer."""
    from ttscale.run.distributed import WorkerSpec

    if prompt == "chat" and chat_template is None:
        raise ValueError("--ray with --prompt chat needs --chat-template (chatml, "
                         "llama3 or a .jinja file): the model is loaded on the actors")
    cluster = RayCluster(address=ray_address, actors=actors, cpus_per_actor=cpus_per_actor,
                         gpus_per_actor=gpus_per_actor)
    outcome = run_on_ray_with_progress(
        job.config, cluster, WorkerSpec(job.engine, job.scorer, job.scoring),
        out_dir or (lambda info: _default_run_dir(job.config, info.name, job.plan)),
        prompt_format(prompt, chat_template, None, thinking), job.plan, parallel)
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    return outcome, manifest["model"]["name"]
