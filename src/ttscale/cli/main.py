"""The ``ttscale`` command line: run | demo | ladder | solve | methods | prms | report | serve |
prm … | plan …; each command lives in a module of its own, this one puts them together."""

from __future__ import annotations

import typer

from ttscale.cli.demo import demo
from ttscale.cli.ladder import ladder
from ttscale.cli.methods import methods
from ttscale.cli.plan import calibrate, evaluate, prior, show
from ttscale.cli.prm import card, label, prm_serve, train
from ttscale.cli.prm import evaluate as evaluate_head
from ttscale.cli.prms import prms
from ttscale.cli.report import report
from ttscale.cli.run import run
from ttscale.cli.serve import serve
from ttscale.cli.solve import solve
from ttscale.planner.prior import RULES

app = typer.Typer(
    help="Compute-optimal test-time scaling: a policy writes step by step, a scorer scores "
         "each step, a search (Best-of-N, beam search, DVTS) joins them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(run)
app.command()(demo)
app.command("ladder")(ladder)
app.command()(solve)
app.command()(prms)
app.command()(methods)
app.command()(report)
app.command()(serve)

prm_app = typer.Typer(help="Process reward models: label steps, train a value head, evaluate "
                           "it, serve one over HTTP.", no_args_is_help=True)
prm_app.command("serve")(prm_serve)
prm_app.command("label")(label)
prm_app.command("train")(train)
prm_app.command("eval")(evaluate_head)
prm_app.command("card")(card)
app.add_typer(prm_app, name="prm")

plan_app = typer.Typer(
    help="The compute-optimal planner: calibrate a plan (method and budget per difficulty "
         "bin), evaluate it on held-out problems, or show the prior rules. " + RULES,
    no_args_is_help=True)
plan_app.command("calibrate")(calibrate)
plan_app.command("evaluate")(evaluate)
plan_app.command("show")(show)
plan_app.command("prior")(prior)
app.add_typer(plan_app, name="plan")


if __name__ == "__main__":  # pragma: no cover
    app()
