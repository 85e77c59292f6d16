"""The compute-optimal planner: difficulty bins, a calibrated or prior plan, the probe that
predicts a problem's bin at inference, and ``--method auto`` that follows the plan.

Modules: :mod:`difficulty` (pass@1 and bins), :mod:`prior` (the paper's rules),
:mod:`probe` (probe features and the bin predictor), :mod:`plan` (plan files and decisions),
:mod:`auto` (the live method), :mod:`calibrate` and :mod:`evaluate` (the study on a dataset
split into calibration and evaluation halves), :mod:`stats` and :mod:`split`."""

from ttscale.planner.plan import Decision, Plan, load_plan, prior_plan
from ttscale.planner.prior import RULES, prior_method

__all__ = ["RULES", "Decision", "Plan", "load_plan", "prior_method", "prior_plan"]
