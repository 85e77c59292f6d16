"""The ``ttscale`` command line: run | report | plan | solve | serve | demo | ladder | prms |
prm serve."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections import Counter
from dataclasses import asdict
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
    engine_spec_from,
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

app = typer.Typer(
    help="Compute-optimal test-time scaling: a policy writes step by step, a scorer scores "
         "each step, a search (Best-of-N, beam search, DVTS) joins them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
def _default_run_dir(config, model_name: str, plan=None) -> Path:
    """Runs of the same command land in the same folder, so rerunning it resumes (locally
    or on Ray alike)."""
    identity = json.dumps({"config": asdict(config), "model": model_name,
                           **({"plan": plan.identity} if plan is not None else {})},
                          sort_keys=True, default=str)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return Path("runs") / f"{config.dataset.name}-{'-'.join(config.methods)}-{digest}"


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                    transient=False)


def _run_with_progress(config, policy, scorer, run_dir, prompt, plan=None, parallel=None):
    from ttscale.run.runner import run

    with _progress() as progress:
        task = progress.add_task("problems", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        extra = {} if parallel is None else {"parallel": parallel}
        return asyncio.run(run(config, policy, scorer, run_dir, prompt, on_problem_done=advance,
                               plan=plan, **extra))


def _run_on_ray_with_progress(config, cluster, worker, run_dir, prompt, plan, parallel):
    from ttscale.run.distributed import run_on_ray

    with _progress() as progress:
        task = progress.add_task("problems", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return run_on_ray(config, cluster, worker, run_dir, prompt, on_problem_done=advance,
                          plan=plan, parallel=parallel)


def _print_summary(outcome, config, title: str) -> None:
    from ttscale.report.summary import render_table, summarize

    rows = summarize(outcome.records, config.jobs())
    out.print(render_table(rows, title))
    _print_run_note(outcome)


def _print_run_note(outcome) -> None:
    note = f"{outcome.new_records} new record(s) in {outcome.seconds:.1f} s"
    if outcome.policy_generated_tokens and outcome.seconds > 0:
        note += (f", {outcome.policy_generated_tokens} tokens generated "
                 f"({outcome.policy_generated_tokens / outcome.seconds:.0f} tok/s)")
        if outcome.computed_tokens > outcome.policy_generated_tokens:
            note += (f", {outcome.computed_tokens} computed by policy and scorer, prompts "
                     f"included ({outcome.computed_tokens / outcome.seconds:.0f} tok/s)")
    chosen = Counter(f"{r['plan']['method']}@{r['plan']['n']}" for r in outcome.records
                     if r["method"] == "auto" and "plan" in r)
    if chosen:
        out.print("auto chose: " + ", ".join(f"{k} ×{v}" for k, v in sorted(chosen.items())),
                  highlight=False)
    note += f"; records: {outcome.run_dir / 'records.jsonl'}"
    if outcome.skipped_bad_lines:
        note += f"; {outcome.skipped_bad_lines} unreadable line(s) skipped (see warnings)"
    out.print(note, highlight=False)
    if outcome.failures:
        for failure in outcome.failures:
            console.print(f"[red]problem {failure.problem_id} failed:[/red] {failure.message}",
                          highlight=False)
        fail(f"{len(outcome.failures)} problem(s) failed and have no records; the others were "
             "saved. Fix the cause and rerun the same command to finish them.")


@app.command()
def run(
    dataset: Annotated[str, typer.Option(help="math500, aime24, gsm8k, gsm8k_train, ladder, or a "
                                              "JSONL file with problem and answer fields")
                       ] = "gsm8k",
    method: Annotated[str, typer.Option(help="comma-separated: greedy, majority, bon, beam, "
                                             "dvts, auto (the planner: see --plan)")] = "bon",
    n: Annotated[str, typer.Option("--n", "--budget",
                                   help="budgets N (generated paths), e.g. 4,16,64")] = "4",
    method_n: MethodBudgetsOpt = None,
    plan: Annotated[Path | None, typer.Option(
        help="plan file for --method auto (from `ttscale plan calibrate`); without one, auto "
             "follows the paper's prior rules for the policy's size (`ttscale plan prior`)")
                    ] = None,
    width: Annotated[int, typer.Option(help="beam width M for beam and dvts")] = 4,
    prm: PrmOpt = "self",
    prm_device: PrmDeviceOpt = "cpu",
    prm_dtype: PrmDtypeOpt = "auto",
    prm_format: PrmFormatOpt = "qwen-prm",
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = False,
    step_agg: Annotated[str, typer.Option(help="last, min, mean or prod")] = "last",
    answer_agg: Annotated[str, typer.Option(help="prm_max, prm_vote or majority")
                          ] = "prm_vote",
    limit: Annotated[int | None, typer.Option(help="at most this many problems")] = None,
    offset: Annotated[int, typer.Option(help="skip this many problems first")] = 0,
    ids: Annotated[str | None, typer.Option(help="comma-separated problem ids")] = None,
    levels: Annotated[str | None, typer.Option(
        help="levels (MATH's 1-5, the ladder's operations), e.g. 1,2")] = None,
    shuffle_seed: Annotated[int | None, typer.Option(help="shuffle problems first")] = None,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    temperature: float = 0.7,
    top_p: float = 1.0,
    max_step_tokens: int = 2048,
    max_depth: int = 40,
    max_solution_tokens: int = 4096,
    step_delimiter: Annotated[str | None, typer.Option(
        help="text that ends a step (default: a line for --prompt fewshot, a blank line for "
             "chat); escapes like \\n are understood")] = None,
    engine: EngineOpt = "llama.cpp",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    params: ParamsOpt = None,
    n_ctx: Annotated[int, typer.Option(help="llama.cpp KV cache size in tokens")] = 32768,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "auto",
    prompt: PromptOpt = "fewshot",
    chat_template: TemplateOpt = None,
    parallel: Annotated[int, typer.Option(
        help="problems searched at once; their engine calls batch together (1: one after "
             "another, bit-reproducible; raise it for a GPU server)")] = 4,
    concurrency: Annotated[int, typer.Option(
        help="--engine openai: requests in flight at most (keep the server's batch full)")
                           ] = 64,
    out_dir: Annotated[Path | None, typer.Option("--out", help="run folder (default: one "
                                                              "named after the settings)")
                       ] = None,
    ray: Annotated[bool, typer.Option(
        "--ray", help="run on Ray actors (extra ray): the cluster at --ray-address or "
                      "RAY_ADDRESS, else a local Ray; each actor loads the engine and scorer "
                      "and takes --parallel problems at a time", rich_help_panel="Ray")
                   ] = False,
    ray_address: Annotated[str | None, typer.Option(
        help="Ray cluster address, e.g. ray://head:10001 or auto", rich_help_panel="Ray")
                           ] = None,
    actors: Annotated[int, typer.Option(help="Ray actors, each with its own engine",
                                        rich_help_panel="Ray")] = 2,
    cpus_per_actor: Annotated[float, typer.Option(
        help="CPUs each actor reserves (llama.cpp uses as many threads)",
        rich_help_panel="Ray")] = 1.0,
    gpus_per_actor: Annotated[float, typer.Option(
        help="GPUs each actor reserves (1 for a vLLM or hf engine on its own GPU)",
        rich_help_panel="Ray")] = 0.0,
    verbose: bool = False,
) -> None:
    """Run methods × budgets over a dataset; resumable (rerun the same command to finish)."""
    setup_logging(verbose)
    try:
        from ttscale.rewards import canonical_spec, check_scorer_spec, load_scorer
        from ttscale.run.runner import DatasetSelection, RunConfig
        from ttscale.settings import SearchSettings

        scorer = canonical_spec(prm)
        options = scorer_options(prm_device, prm_dtype, prm_format, trust_remote_code,
                                         prm_params)
        settings = SearchSettings(
            temperature=temperature, top_p=top_p, max_step_tokens=max_step_tokens,
            max_depth=max_depth, max_solution_tokens=max_solution_tokens, width=width,
            step_aggregation=step_agg, answer_aggregation=answer_agg,  # type: ignore[arg-type]
            step_delimiter=unescape(step_delimiter), seed=seed)
        selection = DatasetSelection(
            name=dataset, ids=parse_csv(ids, "--ids") if ids else None,
            levels=parse_ints(levels, "--levels") if levels else None, limit=limit, offset=offset,
            shuffle_seed=shuffle_seed)
        config = RunConfig(dataset=selection, methods=parse_csv(method, "--method"),
                           budgets=parse_ints(n, "--n"), scorer=scorer, settings=settings,
                           method_budgets=parse_method_budgets(method_n))
        plan_obj = None
        if plan is not None:
            from ttscale.planner import load_plan

            if "auto" not in config.methods:
                raise ValueError("--plan is read by --method auto only; add auto to --method")
            plan_obj = load_plan(plan)
        selection.load()  # bad dataset input fails before a model is loaded
        check_scorer_spec(scorer, options)  # so does a PRM of the wrong format
        if parallel < 1 or concurrency < 1:
            raise ValueError("--parallel and --concurrency must be at least 1")
        engine_spec = engine_spec_from(engine, model, base_url, params, n_ctx, threads,
                                       device, dtype, trust_remote_code, concurrency)
        if ray:
            from ttscale.run.distributed import RayCluster, WorkerSpec

            if prompt == "chat" and chat_template is None:
                raise ValueError("--ray with --prompt chat needs --chat-template (chatml, "
                                 "llama3 or a .jinja file): the model is loaded on the actors")
            cluster = RayCluster(address=ray_address, actors=actors,
                                 cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor)
            chosen_prompt = prompt_format(prompt, chat_template, None)
            outcome = _run_on_ray_with_progress(
                config, cluster, WorkerSpec(engine_spec, scorer, options),
                out_dir or (lambda info: _default_run_dir(config, info.name, plan_obj)),
                chosen_prompt, plan_obj, parallel)
            model_name = json.loads((outcome.run_dir / "manifest.json").read_text())[
                "model"]["name"]
        else:
            from ttscale.engines import load_policy

            policy = load_policy(engine_spec)
            scorer_obj = load_scorer(scorer, policy=policy, options=options)
            chosen_prompt = prompt_format(prompt, chat_template, policy)
            run_dir = out_dir or _default_run_dir(config, policy.info.name, plan_obj)
            outcome = _run_with_progress(config, policy, scorer_obj, run_dir, chosen_prompt,
                                         plan_obj, parallel)
            model_name = policy.info.name
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    _print_summary(outcome, config, f"{dataset}: {model_name}, scorer {scorer}")


DEMO_LEVELS = "1,2,3"
DEMO_PER_LEVEL = "10,1,1"
DEMO_BUDGETS = "4,16"  # majority vote and Best-of-N: one pool of 16 answers both
DEMO_TREE_BUDGETS = "4,8"  # beam search and DVTS: their cost grows with the tree
DEMO_SCORER = "grounded"  # the verifier benchmarks/verifier.py chose (benchmarks/results)
DEMO_STEP_AGGREGATION = "min"
DEMO_ANSWER_AGGREGATION = "prm_vote"
DEMO_PARALLEL = 16  # every problem at once: fuller batches
DEMO_CONTEXT = 32768  # KV cells for every problem in flight, its samples sharing the prompt


@app.command()
def demo(
    levels: Annotated[str, typer.Option(help="ladder levels (operations per problem)")] =
        DEMO_LEVELS,
    per_level: Annotated[str, typer.Option(
        help="test problems per level: one count, or one per level")] = DEMO_PER_LEVEL,
    n: Annotated[str, typer.Option("--n", help="budgets N of majority vote and Best-of-N")] =
        DEMO_BUDGETS,
    tree_n: Annotated[str, typer.Option("--tree-n", help="budgets N of beam search and DVTS")] =
        DEMO_TREE_BUDGETS,
    width: Annotated[int, typer.Option(help="beam width M")] = 4,
    out_dir: Annotated[Path, typer.Option("--out")] = Path("runs/demo"),
    model: ModelOpt = None,
    threads: ThreadsOpt = None,
    parallel: Annotated[int, typer.Option(
        help="problems searched at once (their samples share the engine's batches)")] =
        DEMO_PARALLEL,
    report: Annotated[bool, typer.Option(help="Write the run's HTML report beside it.")] = True,
    prm: Annotated[str, typer.Option(
        help="the verifier of Best-of-N, beam search and DVTS (default: the grounded "
             "checker, the best measured on the embedded model)")] = DEMO_SCORER,
    verbose: bool = False,
) -> None:
    """The main job on the embedded model: greedy vs majority vote vs Best-of-N vs beam search
    vs DVTS on the difficulty ladder's test problems, at two budgets, a table per level and a
    paragraph computed from the records; a saved resumable run and its HTML report (curves,
    tables, every search tree)."""
    setup_logging(verbose)
    try:
        from ttscale.datasets.ladder import SHIPPED_LEVELS, SHIPPED_PER_LEVEL, parse_levels
        from ttscale.rewards import load_scorer
        from ttscale.run.runner import DatasetSelection, RunConfig
        from ttscale.settings import SearchSettings

        chosen_levels = parse_levels(levels)
        if not set(chosen_levels) <= set(SHIPPED_LEVELS):
            raise ValueError(f"the ladder's test split has levels {SHIPPED_LEVELS[0]}-"
                             f"{SHIPPED_LEVELS[-1]}; got --levels {levels}")
        counts = parse_ints(per_level, "--per-level")
        if len(counts) == 1:
            counts = counts * len(chosen_levels)
        most = SHIPPED_PER_LEVEL["ladder_test"]
        if len(counts) != len(chosen_levels) or not all(1 <= c <= most for c in counts):
            raise ValueError(f"--per-level takes one count from 1 to {most} (the test "
                             f"split's problems per level) or one per level "
                             f"({len(chosen_levels)}); got {per_level}")
        ids = tuple(f"ladder-test-L{level}-{k:04d}"
                    for level, count in zip(chosen_levels, counts, strict=True)
                    for k in range(1, count + 1))
        budgets, tree_budgets = parse_ints(n, "--n"), parse_ints(tree_n, "--tree-n")
        settings = SearchSettings(max_step_tokens=48, max_depth=6, max_solution_tokens=192,
                                  width=width, seed=0, step_aggregation=DEMO_STEP_AGGREGATION,
                                  answer_aggregation=DEMO_ANSWER_AGGREGATION)
        config = RunConfig(dataset=DatasetSelection("ladder", ids=ids),
                           methods=("greedy", "majority", "bon", "beam", "dvts"),
                           budgets=budgets, scorer=prm, settings=settings,
                           method_budgets=(("beam", tree_budgets), ("dvts", tree_budgets)))
        if parallel < 1:
            raise ValueError(f"--parallel must be at least 1 (got {parallel})")
        policy = load_engine("llama.cpp", model, None, None, DEMO_CONTEXT, threads)
        chosen_prompt = prompt_format("fewshot", None, policy)
        outcome = _run_with_progress(config, policy, load_scorer(prm, policy=policy),
                                     out_dir, chosen_prompt, parallel=parallel)
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    _print_level_tables(outcome, config, f"{policy.info.name}, verifier {prm}, M = {width}")
    if report:
        from ttscale.report import build_report

        try:
            files = build_report([out_dir], out_dir / "report.html", formats=("png",),
                                 bins="level")
        except TTScaleError as error:
            fail(f"the run finished but its report could not be written: {error}")
        out.print(f"report: {files.html} (open it in a browser; tables and figures in "
                  f"{files.html.with_name('report-files')})")


def _print_level_tables(outcome, config, title: str) -> None:
    """One table per level, then what they show, from the run's records."""
    from ttscale.report.findings import findings_paragraph, tables_by_level
    from ttscale.report.summary import render_table

    for level, rows in tables_by_level(outcome.records, config.jobs()).items():
        operations = "operation" if level == 1 else "operations"
        out.print(render_table(rows, f"ladder level {level}: {level} {operations} — {title}"))
    out.print(findings_paragraph(outcome.records), highlight=False)
    _print_run_note(outcome)


@app.command("ladder")
def ladder_command(
    out_file: Annotated[Path, typer.Argument(help="the JSONL file to write")],
    levels: Annotated[str, typer.Option(help="levels = operations per problem, e.g. 1-5 or "
                                             "1,3")] = "1-5",
    per_level: Annotated[int, typer.Option(help="problems per level")] = 100,
    seed: Annotated[int, typer.Option(help="the same seed writes the same problems")] = 0,
) -> None:
    """Write difficulty-ladder word problems (1, 2, 3, … operations, every intermediate
    quantity recorded) as a dataset for `ttscale run --dataset FILE`. Problems identical to
    the built-in test split's are never written, so a file made for training stays apart
    from it."""
    from ttscale.datasets import load_dataset
    from ttscale.datasets.ladder import generate, parse_levels, write_jsonl

    try:
        test_texts = [p.problem for p in load_dataset("ladder")]
        problems = generate(parse_levels(levels), per_level, seed,
                            prefix=f"ladder-s{seed}", exclude=test_texts)
        write_jsonl(problems, out_file)
    except (TTScaleError, ValueError, OSError) as error:
        fail(str(error))
    out.print(f"wrote {len(problems)} problems ({per_level} per level, levels {levels}, seed "
              f"{seed}) to {out_file}", highlight=False)


@app.command()
def solve(
    problem: Annotated[str, typer.Argument(help="the problem text")],
    method: Annotated[str, typer.Option(help="greedy, majority, bon, beam, dvts or auto (the "
                                             "planner picks, see --plan)")] = "beam",
    n: Annotated[int, typer.Option("--n", "--budget", help="budget N")] = 8,
    plan: Annotated[Path | None, typer.Option(
        help="plan file for --method auto (default: the paper's prior rules)")] = None,
    width: int = 4,
    prm: PrmOpt = "self",
    prm_device: PrmDeviceOpt = "cpu",
    prm_dtype: PrmDtypeOpt = "auto",
    prm_format: PrmFormatOpt = "qwen-prm",
    prm_params: PrmParamsOpt = None,
    trust_remote_code: TrustOpt = False,
    engine: EngineOpt = "llama.cpp",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    params: ParamsOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "auto",
    prompt: PromptOpt = "fewshot",
    chat_template: TemplateOpt = None,
    max_step_tokens: int = 256,
    max_depth: int = 12,
    seed: int = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    verbose: bool = False,
) -> None:
    """Solve one problem: print the best answer and its steps."""
    setup_logging(verbose)
    try:
        from dataclasses import asdict as to_dict

        from ttscale.rewards import check_scorer_spec, load_scorer
        from ttscale.run.solve import solve_async
        from ttscale.settings import SearchSettings

        if not problem.strip():
            raise ValueError("the problem text is empty")
        options = scorer_options(prm_device, prm_dtype, prm_format, trust_remote_code,
                                         prm_params)
        check_scorer_spec(prm, options)
        settings = SearchSettings(width=width, max_step_tokens=max_step_tokens,
                                  max_depth=max_depth, max_solution_tokens=max_step_tokens * 4,
                                  seed=seed)
        policy = load_engine(engine, model, base_url, params, device=device, dtype=dtype,
                         trust_remote_code=trust_remote_code)
        scorer = load_scorer(prm, policy=policy, options=options)
        result = asyncio.run(solve_async(problem, policy=policy, method=method, n=n,
                                         scorer=scorer, settings=settings,
                                         prompt=prompt_format(prompt, chat_template, policy),
                                         plan=plan))
    except (TTScaleError, ValueError) as error:
        fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(to_dict(result), indent=2) + "\n")
        return
    for number, step in enumerate(result.steps, start=1):
        out.print(f"[dim]step {number}[/]  {step}", highlight=False)
    out.print(f"[bold]answer:[/] {result.answer}", highlight=False)
    if result.plan is not None:
        out.print(f"[dim]planner: {result.plan['reason']} (bin {result.plan['predicted_bin']} "
                  f"predicted from {result.plan['probe']['samples']} probe samples)[/]",
                  highlight=False)


@app.command()
def prms() -> None:
    """List the step scorers and PRM formats that --prm accepts, with how each reads a step."""
    from rich.table import Table

    from ttscale.rewards import CATALOGUE, PATH_KINDS

    table = Table("--prm", "kind", "input format and read-out", title="step scorers and PRMs")
    for entry in CATALOGUE:
        if entry.kind in PATH_KINDS:
            spec = f"{entry.name}:PATH"
        elif entry.kind == "http":
            spec = "http://HOST:PORT"
        else:
            spec = " | ".join((*entry.aliases, entry.name))
        table.add_row(spec, entry.kind, entry.summary)
    table.add_row("none", "-", "no scorer (greedy, majority vote)")
    out.print(table)


prm_app = typer.Typer(help="Process reward models: label steps, train a value head, evaluate "
                           "it, serve one over HTTP.", no_args_is_help=True)
app.add_typer(prm_app, name="prm")


@prm_app.command("serve")
def prm_serve(
    prm: Annotated[str, typer.Option(help="FORMAT:PATH with FORMAT qwen-prm or math-shepherd "
                                          "and PATH a local checkpoint folder")],
    host: Annotated[str, typer.Option(help="address to bind; 127.0.0.1 keeps it local")
                    ] = "127.0.0.1",
    port: int = 8001,
    api_key: Annotated[str | None, typer.Option(
        envvar="TTSCALE_API_KEY", help="require 'Authorization: Bearer KEY'")] = None,
    served_model_name: Annotated[str | None, typer.Option(
        help="model name clients use (default: the checkpoint folder's name)")] = None,
    prm_device: PrmDeviceOpt = "cpu",
    prm_dtype: PrmDtypeOpt = "auto",
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


from ttscale.cli.plan import plan_app  # noqa: E402  (after app exists)

app.add_typer(plan_app, name="plan")

from ttscale.cli.report import report  # noqa: E402

app.command()(report)

from ttscale.cli.serve import serve  # noqa: E402

app.command()(serve)

from ttscale.cli.prm import card, evaluate, label, train  # noqa: E402

prm_app.command("label")(label)
prm_app.command("train")(train)
prm_app.command("eval")(evaluate)
prm_app.command("card")(card)


if __name__ == "__main__":  # pragma: no cover
    app()
