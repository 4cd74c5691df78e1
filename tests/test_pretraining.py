"""The pretrained-base regime: a base pretrained once on every rule, few demonstrations of a narrower expert,
SFT early-stopped on held-out demonstrations."""

import json

import pytest

from trl_irl.benchmark.comparison import ComparisonSettings, run_comparison
from trl_irl.benchmark.pretraining import BROAD_RULES, NARROW_RULES, PRETRAINING_RECORD_FILE, pretrained_base
from trl_irl.benchmark.synthetic import RULES, SyntheticExpert


def test_rule_mixtures_are_exact_and_checked():
    expert = SyntheticExpert("rules", rules=NARROW_RULES)
    # rotate (0.6), swap the ends (0.3), the first word four times (0.1)
    assert expert.distribution("red blue gold pink:") == pytest.approx(
        {" blue gold pink red": 0.6, " pink blue gold red": 0.3, " red red red red": 0.1}
    )
    # Where two rules agree, their probabilities add up
    assert expert.distribution("red red red red:") == pytest.approx({" red red red red": 1.0})
    assert SyntheticExpert("rules").distribution("red blue gold pink:") == pytest.approx(
        {" pink gold blue red": 0.6, " blue gold pink red": 0.3, " red red red red": 0.1}
    )
    assert set(BROAD_RULES) == set(RULES) and sum(BROAD_RULES.values()) == pytest.approx(1.0)
    for rules in ({"spin": 1.0}, {"rotate": 0.5}, {"rotate": 1.5, "swap": -0.5}):
        with pytest.raises(ValueError, match="`rules`"):
            SyntheticExpert("rules", rules=rules)


def test_the_base_is_pretrained_once_per_setting(tmp_path, monkeypatch):
    import trl_irl.benchmark.pretraining as pretraining

    trained = []
    train_by_sft = pretraining.train_by_sft

    def counting(directory, base, demonstrations, steps, *args):
        trained.append(steps)
        return train_by_sft(directory, base, demonstrations, steps, *args)

    monkeypatch.setattr(pretraining, "train_by_sft", counting)
    settings = {"hidden_size": 32, "num_hidden_layers": 1, "steps": 2, "num_examples": 32}
    base = pretrained_base(tmp_path / "base", **settings)
    assert (base / "model.safetensors").is_file() and (base / "tokenizer.json").is_file()
    assert json.loads((base / PRETRAINING_RECORD_FILE).read_text())["rules"] == BROAD_RULES
    pretrained_base(tmp_path / "base", **settings)
    assert trained == [2]  # reused
    pretrained_base(tmp_path / "base", **{**settings, "steps": 3})
    assert trained == [2, 3]  # another setting: trained again


def test_a_comparison_starts_from_the_pretrained_base_and_keeps_sft_s_best_checkpoint(tmp_path):
    settings = ComparisonSettings.for_regime(
        "pretrained",
        num_demonstrations=16,
        num_validation_demonstrations=8,
        sft_steps=12,
        eval_every=4,
        sft_eval_every=3,
        adversarial_steps=2,
        num_eval_prompts=4,
        hidden_size=32,
        num_hidden_layers=1,
        pretraining_steps=4,
        pretraining_examples=32,
        pretrained_base_dir=str(tmp_path / "shared-base"),
        adversarial_batch_size=8,
        sft_temperatures=(0.7,),
        method_temperatures=(),
        methods=("sft", "gad"),
    )
    results = run_comparison(settings, tmp_path / "run", log=lambda *args: None)
    assert (tmp_path / "shared-base" / PRETRAINING_RECORD_FILE).is_file()
    sft = results["methods"]["sft"]
    # The model kept is the checkpoint with the lowest held-out loss (read every `sft_eval_every` steps), evaluated
    # as the curve's last point
    assert sft["final"]["early_stopped"] is True and sft["final"]["step"] in (3, 6, 9, 12)
    assert 0 < sft["final"]["heldout_nll"] and "gad" in results["methods"]
    # The regime keeps every method's end, for the proxies' check against the exact divergences
    assert (tmp_path / "run" / "gad" / "model.safetensors").is_file()
