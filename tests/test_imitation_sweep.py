"""The sweep script's own logic: what `--set` accepts and the paired tables it prints (no training here)."""

import pytest
from helpers import load_benchmark_script


@pytest.fixture(scope="module")
def sweep():
    return load_benchmark_script("imitation_sweep")


def test_set_routes_trainer_settings_to_the_adversarial_config(sweep):
    overrides = sweep.parse_overrides(
        ["adversarial_steps=240", "disc_type=classifier", "disc_label_smoothing=0.2", "log_prob_coef=0.5"]
    )
    assert overrides == {
        "adversarial_steps": 240,
        "disc_type": "classifier",
        "adversarial_config": {"disc_label_smoothing": 0.2, "log_prob_coef": 0.5},
    }


def test_repeated_set_flags_all_count(sweep):
    args = sweep.build_parser().parse_args(["--set", "a=1", "b=2", "--set", "c=3"])
    assert args.overrides == ["a=1", "b=2", "c=3"]


@pytest.mark.parametrize("assignment", ["no_such_setting=1", "adversarial_steps"])
def test_set_refuses_unknown_keys_and_missing_values(sweep, assignment):
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        sweep.parse_overrides([assignment])


def test_report_pairs_each_method_with_sft_and_the_oracle_within_seeds(sweep, tmp_path, capsys):
    def final(reverse_kl, **extra):
        return {"reverse_kl": reverse_kl, "forward_kl": 1.0, "invalid": 0.5, "expert_mean_length": 4.0, **extra}

    runs = {
        "sft": {"8": [final(3.0), final(2.0)]},
        "oracle": {"8": [final(1.0), final(1.5)]},
        "gail": {"8": [final(2.0, reward_fidelity=0.4), final(2.25, reward_fidelity=0.2)]},
    }
    record = {
        "args": {"regime": "rules", "seeds": 2, "demonstrations": [8]},
        "summary": sweep.summarise(runs),
        "runs": runs,
    }
    sweep.report(record, tmp_path / "sweep")
    printed = capsys.readouterr().out
    # Seed 0: (3 - 2) / (3 - 1); seed 1: (2 - 2.25) / (2 - 1.5), worse than SFT
    assert "| 8 | gail | 0.50, -0.50 |" in printed
    # gail - sft: -1.0 and +0.25, lower in one seed of two
    assert "| 8 | gail | -0.375 +- 0.884 (1/2) |" in printed
    assert (tmp_path / "sweep_reverse_kl.svg").is_file()
    # Only the adversarial method has a reward fidelity to plot
    assert (tmp_path / "sweep_reward_fidelity.svg").is_file()
