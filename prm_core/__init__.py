"""prm_core: the tested library behind the prm-course notebooks on Process Reward Models."""

from prm_core.data import StepSample

__all__ = ["StepSample"]
__version__ = "0.1.0"
