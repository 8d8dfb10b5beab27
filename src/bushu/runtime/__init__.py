"""Running packages: the `Backend`/`Model` contract and the backends that implement it."""

from bushu.runtime.base import Backend, Model, check_inputs
from bushu.runtime.loader import backend_for, load

__all__ = ["Backend", "Model", "backend_for", "check_inputs", "load"]
