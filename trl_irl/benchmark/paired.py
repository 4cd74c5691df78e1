"""
Paired comparisons over seeds: one difference per seed (same demonstrations, prompts and start for both methods), its
mean with a 95% t-interval over seeds, and an exact two-sided sign test. The seeds are the unit: the evaluation's
own standard error covers the sampled evaluation only, not how the run itself moves with the seed.
"""

import math
import statistics


TEMPERATURE_INFIX = "_temperature_"


def add_best_temperature_rows(rows: dict[str, dict]) -> None:
    """
    For each row sampled at other temperatures too (`sft` beside `sft_temperature_0.8`, ...), add
    `{row}_best_temperature`: the one with the lowest reverse KL, with its `temperature` (1.0 for the row itself).
    Chosen per seed on the evaluation prompts: an optimistic choice, the harder baseline to beat.
    """
    for name in [name for name in rows if TEMPERATURE_INFIX not in name and not name.endswith("_best_temperature")]:
        grid = {1.0: rows[name]}
        for other, row in rows.items():
            prefix, _, temperature = other.partition(TEMPERATURE_INFIX)
            if prefix == name and temperature:
                grid[float(temperature)] = row
        if len(grid) > 1:
            best = min(grid, key=lambda temperature: grid[temperature]["reverse_kl"])
            rows[f"{name}_best_temperature"] = grid[best] | {"temperature": best}


def paired_statistics(differences: list[float], lower_is_better: bool = True) -> dict | None:
    """
    Mean, 95% t-interval and exact sign test of per-seed `differences` (method minus reference); `verdict` is
    "better" or "worse" only where the interval excludes 0, else "within noise". `None` for fewer than 2 seeds.
    """
    from scipy import stats  # the benchmark's statistics only (extra `plots`)

    count = len(differences)
    if count < 2:
        return None
    mean = statistics.fmean(differences)
    half_width = stats.t.ppf(0.975, count - 1) * statistics.stdev(differences) / math.sqrt(count)
    interval = [mean - half_width, mean + half_width]
    better = sum((difference < 0) if lower_is_better else (difference > 0) for difference in differences)
    ties = sum(difference == 0 for difference in differences)
    if interval[1] < 0:
        verdict = "better" if lower_is_better else "worse"
    elif interval[0] > 0:
        verdict = "worse" if lower_is_better else "better"
    else:
        verdict = "within noise"
    return {
        "differences": list(differences),
        "mean": mean,
        "interval": interval,
        "better_in": better,
        # Ties count for neither side (they never happen with sampled evaluations)
        "sign_test_p": stats.binomtest(better, count - ties, 0.5).pvalue if count > ties else 1.0,
        "verdict": verdict,
    }
