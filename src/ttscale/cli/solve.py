"""``ttscale solve``: one problem, one search; the answer and its steps."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ttscale.cli.console import fail, out, setup_logging
from ttscale.cli.options import (
    DEFAULT_PRM,
    BaseUrlOpt,
    DeviceOpt,
    DtypeOpt,
    EngineOpt,
    MaxDepthOpt,
    MaxStepTokensOpt,
    ModelOpt,
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
    SeedOpt,
    TemplateOpt,
    ThinkingBudgetOpt,
    ThinkingOpt,
    TrustOpt,
    VerboseOpt,
    WidthOpt,
    engine_spec,
    from_options,
    prompt_format,
    scorer_options,
    search_settings,
)
from ttscale.engines import EngineSpec
from ttscale.errors import TTScaleError
from ttscale.prompts import PromptFormat
from ttscale.rewards import ScorerOptions
from ttscale.settings import SearchSettings

# one problem at a time, answered while someone waits: a small search with short steps
SOLVE_METHOD = "beam"
SOLVE_BUDGET = 8
SOLVE_STEP_TOKENS = 256
SOLVE_DEPTH = 12
STEPS_PER_SOLUTION = 4  # the solution's token limit, in steps of --max-step-tokens


def solve(
    problem: Annotated[str, typer.Argument(help="the problem text")],
    method: Annotated[str, typer.Option(help="a search method (`ttscale methods` lists "
                                             "them); auto: the planner picks, see --plan")
                      ] = SOLVE_METHOD,
    n: Annotated[int, typer.Option("--n", "--budget", help="budget N")] = SOLVE_BUDGET,
    plan: Annotated[Path | None, typer.Option(
        help="plan file for --method auto (default: the paper's prior rules)")] = None,
    width: WidthOpt = SearchSettings.width,
    prm: PrmOpt = DEFAULT_PRM,
    prm_device: PrmDeviceOpt = ScorerOptions.device,
    prm_dtype: PrmDtypeOpt = ScorerOptions.dtype,
    prm_format: PrmFormatOpt = ScorerOptions.http_format,
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = EngineSpec.trust_remote_code,
    engine: EngineOpt = EngineSpec.kind,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    params: ParamsOpt = None,
    device: DeviceOpt = EngineSpec.device,
    dtype: DtypeOpt = EngineSpec.dtype,
    prompt: PromptOpt = PromptFormat.kind,
    chat_template: TemplateOpt = None,
    thinking: ThinkingOpt = PromptFormat.thinking,
    thinking_budget: ThinkingBudgetOpt = SearchSettings.thinking_budget,
    probe_every: ProbeEveryOpt = SearchSettings.probe_every,
    probe_agreement: ProbeAgreementOpt = SearchSettings.probe_agreement,
    particle_temperature: ParticleTemperatureOpt = SearchSettings.particle_temperature,
    max_step_tokens: MaxStepTokensOpt = SOLVE_STEP_TOKENS,
    max_depth: MaxDepthOpt = SOLVE_DEPTH,
    seed: SeedOpt = SearchSettings.seed,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Solve one problem: print the best answer and its steps."""
    setup_logging(verbose)
    options = dict(locals())  # every option by name: each block's builder takes its own
    try:
        from ttscale.engines import load_policy
        from ttscale.rewards import check_scorer_spec, load_scorer
        from ttscale.run.solve import solve_async

        if not problem.strip():
            raise ValueError("the problem text is empty")
        scoring = from_options(scorer_options, options)
        check_scorer_spec(prm, scoring)
        settings = search_settings(width=width, max_step_tokens=max_step_tokens,
                                   max_depth=max_depth, seed=seed,
                                   max_solution_tokens=max_step_tokens * STEPS_PER_SOLUTION,
                                   thinking_budget=thinking_budget, probe_every=probe_every,
                                   probe_agreement=probe_agreement,
                                   particle_temperature=particle_temperature)
        policy = load_policy(from_options(engine_spec, options))
        scorer = load_scorer(prm, policy=policy, options=scoring)
        result = asyncio.run(solve_async(problem, policy=policy, method=method, n=n,
                                         scorer=scorer, settings=settings, plan=plan,
                                         prompt=prompt_format(prompt, chat_template, policy,
                                                              thinking)))
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    _print_solution(result, as_json)


def _print_solution(result, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    for number, step in enumerate(result.steps, start=1):
        out.print(f"[dim]step {number}[/]  {step}", highlight=False)
    out.print(f"[bold]answer:[/] {result.answer}", highlight=False)
    if result.plan is not None:
        out.print(f"[dim]planner: {result.plan.decision.reason} (bin "
                  f"{result.plan.predicted_bin} predicted from {result.plan.probe.samples} "
                  "probe samples)[/]",
                  highlight=False)
