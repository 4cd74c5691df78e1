"""trl_irl/benchmark/paired.py: paired differences over seeds, with their interval, sign test and verdict."""

import pytest

from trl_irl.benchmark.paired import paired_statistics


@pytest.mark.parametrize(
    ("differences", "lower_is_better", "better_in", "verdict"),
    [
        ([-1.0, -1.2, -0.8], True, 3, "better"),
        ([-1.0, -1.2, -0.8], False, 0, "worse"),
        ([1.0, 1.2, 0.8], False, 3, "better"),
        ([0.5, -0.5, 0.1], True, 1, "within noise"),
    ],
)
def test_paired_statistics_direction_and_verdict(differences, lower_is_better, better_in, verdict):
    result = paired_statistics(differences, lower_is_better=lower_is_better)
    assert result["better_in"] == better_in and result["verdict"] == verdict
    assert result["mean"] == pytest.approx(sum(differences) / 3)


def test_paired_statistics_leaves_ties_out_of_the_sign_test():
    # Two better, one tie: the sign test is over the 2 untied seeds (p = 2 * 1/4)
    assert paired_statistics([-1.0, -2.0, 0.0])["sign_test_p"] == pytest.approx(0.5)
    assert paired_statistics([0.0, 0.0])["sign_test_p"] == 1.0
    assert paired_statistics([-1.0]) is None
