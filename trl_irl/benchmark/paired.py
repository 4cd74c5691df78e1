"""
Paired comparisons over seeds: one difference per seed (same demonstrations, prompts and start for both methods), its
mean with a 95% t-interval over seeds, and an exact two-sided sign test. The seeds are the unit: the evaluation's
own standard error covers the sampled evaluation only, not how the run itself moves with the seed.
"""

import math
import statistics


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
