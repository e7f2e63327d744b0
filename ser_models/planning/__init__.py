"""Planning and evidence: how many labels a question costs before any are gathered (the planner and its
forecast), how large the held-out sets are and how they are drawn from the pool, and the paired-seed
statistics behind every "does selection pay" answer. Below the loop (``ser_models.active``), which uses all of
it; every name loads on first use."""

from ser_models.lazy import lazy_exports

__all__ = ["EvaluationConfig", "draw_evaluation_sets"]

_LAZY = {"EvaluationConfig": "ser_models.planning.evaluation_sets",
         "draw_evaluation_sets": "ser_models.planning.evaluation_sets"}
__getattr__ = lazy_exports(__name__, _LAZY)
