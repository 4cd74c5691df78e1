"""benchmarks/proxy_validation.py: how the proxies' agreement with the exact divergences is read and summarised."""

import json
import math

import pytest
from helpers import load_benchmark_script


@pytest.fixture(scope="module")
def validation():
    return load_benchmark_script("proxy_validation")


def test_exact_finals_are_each_seed_s_method_ends_at_temperature_one(validation, tmp_path):
    for seed, method in ((3, "sft"), (3, "gail"), (4, "sft")):
        record = {
            "args": {"first_seed": seed},
            "runs": {
                method: {"128": [{"reverse_kl": seed + 0.5, "forward_kl": 1.0}]},
                f"{method}_temperature_0.7": {"128": [{"reverse_kl": 9.0, "forward_kl": 9.0}]},
            },
        }
        path = tmp_path / f"imitation_sweep_pretrained_counterfactuals_seed{seed}_{method}.json"
        path.write_text(json.dumps(record))
    finals = validation.exact_finals(tmp_path, "pretrained")
    assert set(finals) == {3, 4} and set(finals[3]) == {"sft", "gail"} and finals[4]["sft"]["reverse_kl"] == 4.5


def test_saved_models_are_found_in_any_job_s_folder_once(validation, tmp_path):
    for job, method in (("base", "sft"), ("gail", "sft"), ("gail", "gail"), ("oracle", "pretrained_base")):
        (tmp_path / job / "pretrained-128-seed3" / method).mkdir(parents=True)
        (tmp_path / job / "pretrained-128-seed3" / method / "model.safetensors").write_text("")
    found = validation.saved_models(tmp_path, "pretrained-128-seed3", ("sft", "gail", "airl", "pretrained_base"))
    assert found == {
        "sft": tmp_path / "base" / "pretrained-128-seed3" / "sft",
        "gail": tmp_path / "gail" / "pretrained-128-seed3" / "gail",
    }


def test_the_summary_averages_each_proxy_s_correlation_and_sizes_the_held_out_set(validation):
    per_seed = {
        3: {
            "spearman": {"heldout_nll": {"reverse_kl": 0.5, "forward_kl": 1.0}},
            "methods": {"gail": {"heldout_nll_difference_sd": 0.1}, "sft": {}},
        },
        4: {
            "spearman": {"heldout_nll": {"reverse_kl": -0.5, "forward_kl": math.nan}},
            "methods": {"gail": {"heldout_nll_difference_sd": 0.3}, "oracle": {"heldout_nll_difference_sd": 0.2}},
        },
    }
    summary = validation.summarise(per_seed)
    assert summary["heldout_nll"]["reverse_kl"] == {"mean": 0.0, "seeds": 2}
    assert summary["heldout_nll"]["forward_kl"] == {"mean": 1.0, "seeds": 1}  # an undefined correlation left out
    assert summary["heldout_nll_difference_sd_median"] == 0.2
    # (1.96 * 0.2 / 0.05)^2 = 61.5: 62 demonstrations for a 95% interval of +-0.05 nats per token
    assert summary["demonstrations_for_half_width"] == 62
    assert "judge_reverse_kl" not in summary


def test_an_earlier_report_s_seeds_are_kept_only_if_measured_alike(validation, tmp_path):
    from argparse import Namespace

    args = Namespace(regime="distil", demonstrations=256, samples_per_prompt=4, judge="large_sft", add_to=None)
    earlier = {**validation.settings_of(args), "summary": {}, "seeds": {"3": {"spearman": {}, "methods": {}}}}
    args.add_to = [tmp_path / "earlier.json", tmp_path / "other.json"]
    args.add_to[0].write_text(json.dumps(earlier))
    args.add_to[1].write_text(json.dumps(earlier | {"seeds": {"5": {"spearman": {}, "methods": {}}}}))
    assert validation.earlier_seeds(args) == {3: {"spearman": {}, "methods": {}}, 5: {"spearman": {}, "methods": {}}}
    args.samples_per_prompt = 8
    with pytest.raises(SystemExit, match="samples_per_prompt"):
        validation.earlier_seeds(args)
