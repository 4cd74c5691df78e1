"""
The benchmark harness, library code of `trl-irl demo` (its dependencies are the `demo` extra) that no trainer
imports: synthetic experts whose distributions are known (`synthetic`), tiny models built locally (`tiny_models`),
the comparison of every method against them behind `trl-irl demo` and `benchmarks/imitation_sweep.py` (`comparison`,
with its `settings` and `monitoring`). Its figures are drawn by `trl_irl.plots`.
"""
