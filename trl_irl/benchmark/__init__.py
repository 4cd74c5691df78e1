"""
The benchmark harness, not library code: synthetic experts whose distributions are known (`synthetic`), tiny models
built locally (`tiny_models`), the comparison of every method against them behind `trl-irl demo` and
`benchmarks/imitation_sweep.py` (`comparison`, with its `settings` and `monitoring`), and figures (`plots`).
"""
