"""Optimisation: the fastest variant within an accuracy budget, searched across runtimes."""

from bushu.optimize.config import Budget, OptimizeConfig, parse_budget, preset
from bushu.optimize.search import Result, optimize

__all__ = ["Budget", "OptimizeConfig", "Result", "optimize", "parse_budget", "preset"]
