"""
`benchmarks/counterfactuals.py` and the methods it builds (`trl_irl/benchmark/methods.py`): the non-adversarial uses of
the larger SFT model, the frozen discriminator, costs, and the paired report.
"""

import math
from pathlib import Path

import pytest
import torch
from helpers import load_benchmark_script
from transformers import AutoModelForCausalLM, AutoTokenizer

import trl_irl.benchmark.methods as methods
from trl_irl.benchmark.comparison import ComparisonSettings, run_comparison


@pytest.fixture(scope="module")
def counterfactuals():
    return load_benchmark_script("counterfactuals")


def _recording(monkeypatch, name: str) -> list:
    """Every trainer of class `name` that the comparison builds, with the keyword arguments it was built with."""
    built = []
    parent = getattr(methods, name)

    class Recording(parent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append((self, kwargs))

    monkeypatch.setattr(methods, name, Recording)
    return built


@pytest.fixture(scope="module")
def proxy_comparison(tmp_path_factory):
    """One tiny comparison with every use of the larger SFT model, its trainers recorded."""
    monkeypatch = pytest.MonkeyPatch()
    names = ("GAILTrainer", "DistillationTrainer", "SFTTrainer", "GRPOTrainer")
    recorded = {name: _recording(monkeypatch, name) for name in names}
    output_dir = tmp_path_factory.mktemp("proxies")
    settings = ComparisonSettings(
        num_demonstrations=16,
        sft_steps=4,
        adversarial_steps=3,
        eval_every=3,
        num_eval_prompts=4,
        hidden_size=32,
        teacher_hidden_size=48,
        adversarial_batch_size=8,
        disc_warmup_generations=0,
        disc_from_large_sft=True,
        method_temperatures=(0.7,),
        methods=(
            "large_sft",
            "gail",
            "gail_frozen",
            "proxy_distillation",
            "proxy_distillation_jsd",
            "proxy_sequence_distillation",
            "gad",
            "checker",
            "checker_kl",
            "checker_gail_frozen",
            "checker_gail",
        ),
    )
    try:
        results = run_comparison(settings, output_dir, log=lambda *args: None)
    finally:
        monkeypatch.undo()
    return settings, output_dir, results, recorded


def test_the_frozen_discriminator_never_moves_and_the_trained_one_does(proxy_comparison):
    _, output_dir, _, recorded = proxy_comparison
    large_sft = AutoModelForCausalLM.from_pretrained(output_dir / "large_sft").state_dict()
    (trained, trained_kwargs), (frozen, frozen_kwargs), *_ = recorded["GAILTrainer"]
    assert trained_kwargs["discriminator"] == frozen_kwargs["discriminator"] == str(output_dir / "large_sft")
    assert frozen_kwargs["args"].disc_updates_per_generation == 0
    assert trained_kwargs["args"].disc_updates_per_generation != 0

    def moved(trainer):
        state = trainer.discriminator.model.state_dict()
        return any(not torch.equal(state[name], large_sft[name]) for name in large_sft)

    assert moved(trained) and not moved(frozen)


def test_gad_s_discriminator_is_a_pairwise_classifier_on_the_policy_s_own_start(proxy_comparison):
    # Not the larger model, whatever `disc_from_large_sft` says: GAD's discriminator is as large as the policy
    _, output_dir, results, recorded = proxy_comparison
    gad, kwargs = recorded["GAILTrainer"][2]
    assert Path(kwargs["args"].output_dir).name == "gad" and kwargs["discriminator"] is None
    args = kwargs["args"]
    assert (args.disc_type, args.disc_loss_type, args.disc_demonstration_source, args.divergence) == (
        "classifier",
        "bradley_terry",
        "batch",
        "reverse_kl",
    )
    assert gad.discriminator.pairs_samples and gad.discriminator.model.config.hidden_size == 32
    sft = AutoModelForCausalLM.from_pretrained(output_dir / "sft").state_dict()
    backbone = {name.removeprefix("model."): value for name, value in gad.discriminator.model.state_dict().items()}
    # It trained from the SFT checkpoint: its backbone moved away from it
    assert any(not torch.equal(backbone[name.removeprefix("model.")], sft[name]) for name in sft if "embed" in name)
    assert "gad" in results["methods"]


def test_the_checker_is_trained_alone_with_kl_and_beside_the_discriminator_frozen_and_trained(proxy_comparison):
    settings, output_dir, results, recorded = proxy_comparison
    grpo = {Path(kwargs["args"].output_dir).name: kwargs for _, kwargs in recorded["GRPOTrainer"]}
    # GAILTrainer is a GRPOTrainer: its runs are recorded there too
    assert grpo["checker"]["args"].beta == 0.0 and grpo["checker_kl"]["args"].beta == settings.adversarial_kl_coef
    assert type(grpo["checker"]["reward_funcs"]).__name__ == "ExpertSupportChecker"
    beside = {Path(kwargs["args"].output_dir).name: (trainer, kwargs) for trainer, kwargs in recorded["GAILTrainer"]}
    for name, updates in (("checker_gail_frozen", 0), ("checker_gail", 1)):
        trainer, kwargs = beside[name]
        assert type(kwargs["reward_funcs"]).__name__ == "ExpertSupportChecker" and kwargs["args"].beta == 0.0
        assert kwargs["discriminator"] == str(output_dir / "large_sft")
        assert (kwargs["args"].disc_updates_per_generation > 0) == bool(updates)
        assert [function.__name__ for function in trainer.reward_funcs] == ["discriminator", "checker"]
    assert {"checker", "checker_kl", "checker_gail_frozen", "checker_gail"} <= set(results["methods"])


def test_proxy_distillation_takes_the_larger_sft_model_as_teacher_with_the_adversarial_settings(proxy_comparison):
    settings, output_dir, _, recorded = proxy_comparison
    (_, reverse_kl), (_, jsd) = recorded["DistillationTrainer"]
    for kwargs in (reverse_kl, jsd):
        assert kwargs["teacher_model"] == str(output_dir / "large_sft")
        assert kwargs["model"] == str(output_dir / "sft")
        args = kwargs["args"]
        assert (args.learning_rate, args.per_device_train_batch_size, args.max_steps) == (
            settings.adversarial_learning_rate,
            settings.adversarial_batch_size,
            settings.adversarial_steps,
        )
    # DistillationConfig's `beta` picks the divergence: its default (reverse KL), and the JSD of the `_jsd` variant;
    # GRPO's `beta` of the adversarial settings is never passed on
    assert reverse_kl["args"].beta == 1.0 and settings.adversarial_kl_coef != 1.0
    assert (Path(jsd["args"].output_dir).name, jsd["args"].beta) == ("proxy_distillation_jsd", 0.5)


def test_sequence_distillation_trains_on_as_many_larger_model_samples_as_the_on_policy_methods_draw(
    proxy_comparison,
):
    settings, output_dir, _, recorded = proxy_comparison
    by_output = {Path(kwargs["args"].output_dir).name: kwargs for _, kwargs in recorded["SFTTrainer"]}
    kwargs = by_output["proxy_sequence_distillation"]
    assert kwargs["model"] == str(output_dir / "sft")
    samples = kwargs["train_dataset"]
    drawn = settings.adversarial_steps * settings.adversarial_batch_size
    assert 0 < len(samples) <= drawn and all(completion.strip() for completion in samples["completion"])
    # The demonstrations' prompts, each as often as the others give or take one (before empty samples are left out)
    demonstrations = by_output["sft"]["train_dataset"]
    counts = [samples["prompt"].count(prompt) for prompt in set(demonstrations["prompt"])]
    assert max(counts) - min(counts) <= 1 + (drawn - len(samples))
    assert set(samples["prompt"]) <= set(demonstrations["prompt"])
    assert kwargs["args"].max_steps == settings.adversarial_steps
    assert kwargs["args"].per_device_train_batch_size == settings.adversarial_batch_size


def test_larger_model_samples_leave_out_empty_ones(proxy_comparison, monkeypatch):
    # A larger model that always ends at once leaves nothing to learn from: every sample is empty and left out
    _, output_dir, _, recorded = proxy_comparison
    sft_kwargs = {Path(kwargs["args"].output_dir).name: kwargs for _, kwargs in recorded["SFTTrainer"]}["sft"]
    run = methods.ComparisonRun.__new__(methods.ComparisonRun)
    run.demonstrations, run.output_dir = sft_kwargs["train_dataset"], output_dir
    run.tokenizer, run.settings = AutoTokenizer.from_pretrained(output_dir / "base"), ComparisonSettings()

    def ends_at_once(model, tokenizer, prompts, n, seed):
        return [prompt for prompt in prompts for _ in range(n)], [[tokenizer.eos_token_id]] * (len(prompts) * n)

    monkeypatch.setattr(methods, "sample", ends_at_once)
    assert len(methods.larger_model_samples(run, 10)) == 0


def test_the_larger_model_is_a_row_at_every_temperature_and_costs_are_split(proxy_comparison):
    settings, _, results, _ = proxy_comparison
    rows = results["methods"]
    assert {f"large_sft_temperature_{t}" for t in settings.sft_temperatures} <= set(rows)
    assert rows["large_sft_temperature_0.6"]["final"]["reverse_kl"] != rows["large_sft"]["final"]["reverse_kl"]
    # Every other method's end at `method_temperatures` too: the same model, sampled sharper
    for method in settings.methods[1:]:
        sharper = rows[f"{method}_temperature_0.7"]["final"]
        assert sharper["reverse_kl"] != rows[method]["final"]["reverse_kl"], method
        assert sharper["step"] == rows[method]["final"]["step"], method
    for method in settings.methods:
        result = rows[method]
        assert result["train_seconds"] > 0 and result["evaluation_seconds"] >= 0, method
        assert result["train_seconds"] + result["evaluation_seconds"] == pytest.approx(result["seconds"], abs=0.11)


def test_every_method_s_end_has_the_held_out_nll_a_user_would_measure(proxy_comparison):
    from trl_irl.benchmark.comparison import results_table
    from trl_irl.evaluation import heldout_nll

    settings, output_dir, results, _ = proxy_comparison
    rows = results["methods"]
    for method in settings.methods:
        assert 0 < rows[method]["final"]["heldout_nll"] < 20, method
    # The larger model's, measured again from its saved checkpoint on the same held-out demonstrations (one response
    # to each evaluation prompt, drawn from the expert)
    from trl_irl.benchmark.comparison import heldout_demonstrations
    from trl_irl.benchmark.synthetic import SyntheticExpert

    expert = SyntheticExpert(settings.regime, seed=settings.seed)
    prompts = list(expert._memorised)
    heldout = heldout_demonstrations(expert, prompts, seed=settings.seed + 40_000)
    large_sft = AutoModelForCausalLM.from_pretrained(output_dir / "large_sft")
    tokenizer = AutoTokenizer.from_pretrained(output_dir / "base")
    measured = heldout_nll(large_sft, tokenizer, *heldout)
    assert rows["large_sft"]["final"]["heldout_nll"] == pytest.approx(measured, rel=1e-4)
    assert "heldout_nll" in results_table(results)


def test_the_pretrained_regime_runs_no_frozen_copy_of_the_policy(counterfactuals):
    # Without a larger model a frozen likelihood ratio is the policy's own start: reward 0, refused by the trainers
    for regime in counterfactuals.REGIMES.values():
        assert set(regime.extras) <= set(counterfactuals.EXTRA_JOBS)
    pretrained = counterfactuals.REGIMES["pretrained"]
    methods = {method for methods in pretrained.jobs.values() for method in methods} | set(pretrained.extras)
    assert methods == {"sft", "gail", "airl", "oracle", "gad"}


def test_paired_difference_has_the_t_interval_and_the_exact_sign_test(counterfactuals):
    by_seed = {
        seed: {"a": {"reverse_kl": a, "reverse_kl_se": 0.3}, "b": {"reverse_kl": 5.0, "reverse_kl_se": 0.4}}
        for seed, a in zip((3, 4, 5), (4.0, 3.0, 2.0), strict=True)
    }
    result = counterfactuals.paired(by_seed, "a", "b", "reverse_kl")
    assert result["differences"] == [-1.0, -2.0, -3.0]
    # mean -2, standard deviation 1, t(0.975, 2 degrees of freedom) = 4.302653
    half_width = 4.302653 / math.sqrt(3)
    assert result["interval"] == pytest.approx([-2 - half_width, -2 + half_width], abs=1e-5)
    assert result["verdict"] == "within noise" and result["better_in"] == 3
    assert result["sign_test_p"] == pytest.approx(0.25)  # both tails of 1/8
    assert result["evaluation_se"] == pytest.approx([0.5] * 3)
    by_seed[6] = {"a": {"reverse_kl": 2.0, "reverse_kl_se": 0.3}, "b": {"reverse_kl": 4.0, "reverse_kl_se": 0.4}}
    assert counterfactuals.paired(by_seed, "a", "b", "reverse_kl")["verdict"] == "better"
    assert counterfactuals.paired({3: by_seed[3]}, "a", "b", "reverse_kl") is None


def test_a_metric_is_paired_over_the_seeds_whose_rows_have_it_and_a_higher_score_is_better(counterfactuals):
    by_seed = {
        3: {"a": {"checker_score": 0.9}, "b": {"checker_score": 0.5}},
        4: {"a": {"checker_score": 0.8}, "b": {"checker_score": 0.6}},
        5: {"a": {"reverse_kl": 1.0}, "b": {"checker_score": 0.6}},  # run before the checker was: left out
    }
    result = counterfactuals.paired(by_seed, "a", "b", "checker_score")
    assert result["seeds"] == [3, 4] and result["better_in"] == 2
    assert counterfactuals.paired(by_seed, "a", "b", "invalid") is None


def test_proxy_agreement_is_spearman_s_correlation_over_the_methods_of_each_seed(counterfactuals):
    rows = {
        "a": {"heldout_nll": 1.0, "reverse_kl": 0.1, "forward_kl": 3.0},
        "b": {"heldout_nll": 2.0, "reverse_kl": 0.2, "forward_kl": 2.0},
        "c": {"heldout_nll": 3.0, "reverse_kl": 0.3, "forward_kl": 1.0},
        "a_temperature_0.7": {"heldout_nll": 9.0, "reverse_kl": 0.0, "forward_kl": 0.0},  # left out
    }
    agreement = counterfactuals.proxy_agreement({3: rows, 4: rows})
    assert agreement["reverse_kl"] == {"per_seed": {3: pytest.approx(1.0), 4: pytest.approx(1.0)}, "mean": 1.0}
    assert agreement["forward_kl"]["mean"] == pytest.approx(-1.0)


def test_best_temperature_rows_take_each_seed_s_lowest_reverse_kl(counterfactuals, tmp_path):
    import json

    for seed, best in ((3, "sft_temperature_0.7"), (4, "sft")):
        rows = {"sft": 1.0, "sft_temperature_0.7": 0.8, "sft_temperature_0.4": 0.9}
        if best == "sft":
            rows = {"sft": 0.5, "sft_temperature_0.7": 0.8}
        runs = {name: {"2048": [{"reverse_kl": value}]} for name, value in rows.items()}
        record = {"args": {"first_seed": seed}, "runs": runs}
        (tmp_path / f"imitation_sweep_distil_counterfactuals_seed{seed}_base.json").write_text(json.dumps(record))
    by_seed = counterfactuals._finals_by_seed(tmp_path, "distil")
    assert by_seed[3]["sft_best_temperature"] == {"reverse_kl": 0.8, "temperature": 0.7}
    assert by_seed[4]["sft_best_temperature"] == {"reverse_kl": 0.5, "temperature": 1.0}


def test_a_job_added_later_joins_the_earlier_report_s_seeds_and_its_rows_win(counterfactuals, tmp_path):
    import json

    earlier = {
        "3": {"sft": {"reverse_kl": 1.0}, "sft_temperature_0.7": {"reverse_kl": 0.8}, "old": {"reverse_kl": 2.0}},
        "4": {"sft": {"reverse_kl": 0.5}},
    }
    # The earlier report's best-temperature row is taken again from the merged rows, not kept
    earlier["3"]["sft_best_temperature"] = {"reverse_kl": 9.0, "temperature": 0.1}
    (tmp_path / "earlier.json").write_text(json.dumps({"runs": earlier}))
    earlier["3"]["sft"]["train_seconds"] = 10.0
    (tmp_path / "earlier.json").write_text(json.dumps({"runs": earlier}))
    # The base job run again: the same SFT figures (timed beside other work), a metric measured since
    added = {
        3: {
            "sft_temperature_0.7": {"reverse_kl": 0.6},
            "new": {"reverse_kl": 1.5},
            "sft": {"reverse_kl": 1.0, "train_seconds": 30.0, "checker_score": 0.5},
        }
    }
    merged = counterfactuals._merged_with([tmp_path / "earlier.json"], added)
    assert merged[3]["old"] == {"reverse_kl": 2.0} and merged[3]["new"] == {"reverse_kl": 1.5}
    assert merged[3]["sft"] == {"reverse_kl": 1.0, "train_seconds": 10.0, "checker_score": 0.5}
    assert merged[3]["sft_best_temperature"] == {"reverse_kl": 0.6, "temperature": 0.7}
    assert merged[4] == {"sft": {"reverse_kl": 0.5}}


def test_curves_are_kept_per_seed_and_averaged_over_the_seeds_that_reached_a_step(counterfactuals, tmp_path):
    import json

    for seed, last in ((3, 1.0), (4, 3.0)):
        run_dir = tmp_path / "gail" / f"memorise-32-seed{seed}"
        run_dir.mkdir(parents=True)
        curve = [{"step": 150, "reverse_kl": 2.0, "js": 0.1}, {"step": 170, "reverse_kl": last}]
        methods = {"gail": {"curve": curve}, "gail_temperature_0.7": {"curve": curve[:1]}}
        (run_dir / "results.json").write_text(json.dumps({"methods": methods}))
    curves = counterfactuals._curves(tmp_path, "memorise")
    assert set(curves) == {"3", "4"} and set(curves["3"]) == {"gail"}  # no temperature rows
    assert curves["3"]["gail"][0] == {"step": 150, "reverse_kl": 2.0}  # only the curve's metrics
    curves["5"] = {"gail": [{"step": 150, "reverse_kl": 5.0}]}  # a seed that stopped early counts where it ran
    assert counterfactuals.mean_curves(curves, ["gail"], "reverse_kl") == {"gail": [(150, 3.0), (170, 2.0)]}
