import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import trl_irl.benchmark.teacher as teacher_module
from trl_irl.benchmark.comparison import ComparisonSettings, results_table, run_comparison
from trl_irl.benchmark.settings import default_methods
from trl_irl.benchmark.synthetic import SyntheticExpert
from trl_irl.benchmark.teacher import (
    TeacherExpert,
    TeacherReverseKLReward,
    load_teacher,
    sample,
    sequence_log_probs,
    train_teacher,
)
from trl_irl.benchmark.tiny_models import build_tiny_causal_lm


RULES = SyntheticExpert("rules")


@pytest.fixture(scope="module")
def models(tiny_model_path):
    """The session's tiny model as the teacher, and another initialisation as the student, sharing a tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    teacher = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    student = build_tiny_causal_lm(tokenizer, seed=1).eval()
    return teacher, student, tokenizer


def _next_token_log_probs(model, tokenizer, prompt, temperature=1.0):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokenizer(prompt)["input_ids"]])).logits[0, -1].float()
    return (logits / temperature).log_softmax(-1)


def test_sequence_log_probs_sum_the_token_log_probs(models):
    teacher, _, tokenizer = models
    prompt, completion = "red blue gold pink:", tokenizer(" pink gold", add_special_tokens=False)["input_ids"]
    ids = tokenizer(prompt)["input_ids"] + completion + [tokenizer.eos_token_id]
    with torch.no_grad():
        log_probs = (teacher(input_ids=torch.tensor([ids])).logits[0, :-1].float() / 0.7).log_softmax(-1)
    response_positions = range(len(ids) - len(completion) - 1, len(ids))
    by_hand = sum(log_probs[position - 1, ids[position]].item() for position in response_positions)
    scored = sequence_log_probs(teacher, tokenizer, [prompt], [completion + [tokenizer.eos_token_id]], 0.7)
    assert scored[0] == pytest.approx(by_hand, abs=1e-4)


def test_divergences_are_unbiased_estimates_of_the_exact_kls(models, monkeypatch):
    # With completions of one token the exact KLs are sums over the vocabulary at each prompt
    teacher, student, tokenizer = models
    monkeypatch.setattr(teacher_module, "MAX_NEW_TOKENS", 1)
    prompts = ["red blue gold pink:", "teal navy lime plum:"]
    expert = TeacherExpert(teacher, tokenizer, RULES, samples_per_prompt=3000)
    metrics = expert.divergences(student, prompts, temperature=0.8)
    reverse, forward = [], []
    for prompt in prompts:
        log_pi = _next_token_log_probs(student, tokenizer, prompt, 0.8)
        log_teacher = _next_token_log_probs(teacher, tokenizer, prompt)
        reverse.append((log_pi.exp() * (log_pi - log_teacher)).sum().item())
        forward.append((log_teacher.exp() * (log_teacher - log_pi)).sum().item())
    assert 0 < metrics["reverse_kl_se"] < 0.05 and 0 < metrics["forward_kl_se"] < 0.05
    # 4-sigma bands: each fails by chance about once in 15,000 runs
    assert abs(metrics["reverse_kl"] - sum(reverse) / 2) < 4 * metrics["reverse_kl_se"]
    assert abs(metrics["forward_kl"] - sum(forward) / 2) < 4 * metrics["forward_kl_se"]


def test_a_policy_equal_to_the_teacher_is_at_zero_divergence(models):
    teacher, _, tokenizer = models
    metrics = TeacherExpert(teacher, tokenizer, RULES, samples_per_prompt=4).divergences(
        teacher, ["red blue gold pink:", "teal navy lime plum:"]
    )
    assert metrics["reverse_kl"] == pytest.approx(0, abs=1e-5)
    assert metrics["forward_kl"] == pytest.approx(0, abs=1e-5)


def test_the_checker_score_is_the_share_of_samples_the_rules_allow(models, monkeypatch):
    teacher, student, tokenizer = models
    prompt = "red blue gold pink:"
    reversed_ids = tokenizer(" pink gold blue red", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    other_ids = tokenizer(" pink pink", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    samples = [reversed_ids, other_ids, reversed_ids[:-1], reversed_ids]  # the third never ended: it fails

    def fixed_samples(model, tokenizer, prompts, n, seed, temperature=1.0):
        return [p for p in prompts for _ in range(n)], samples[:n]

    monkeypatch.setattr(teacher_module, "sample", fixed_samples)
    metrics = TeacherExpert(teacher, tokenizer, RULES, samples_per_prompt=4).divergences(student, [prompt])
    assert metrics["checker_score"] == metrics["expert_checker_score"] == pytest.approx(0.5)


def test_reward_is_the_teachers_minus_the_policys_log_probability(models):
    teacher, student, tokenizer = models
    reward = TeacherReverseKLReward(TeacherExpert(teacher, tokenizer, RULES))
    reward.policy = student
    prompts, ids = sample(student, tokenizer, ["red blue gold pink:"], 4, seed=0)
    expected = [
        t - p
        for t, p in zip(
            sequence_log_probs(teacher, tokenizer, prompts, ids),
            sequence_log_probs(student, tokenizer, prompts, ids),
            strict=True,
        )
    ]
    assert reward(prompts, [""] * 4, ids) == pytest.approx(expected)
    reward.policy = teacher
    assert reward(prompts, [""] * 4, ids) == pytest.approx([0.0] * 4, abs=1e-5)


def test_sampling_leaves_the_global_random_state_and_repeats_with_its_seed(models):
    teacher, _, tokenizer = models
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    first = sample(teacher, tokenizer, ["red:", "blue:"], 3, seed=5)
    assert torch.equal(torch.rand(3), expected)
    assert sample(teacher, tokenizer, ["red:", "blue:"], 3, seed=5) == first
    assert first[0] == ["red:"] * 3 + ["blue:"] * 3
    assert all(len(ids) <= teacher_module.MAX_NEW_TOKENS for ids in first[1])


def test_demonstrations_leave_out_empty_samples_and_count_them(models, monkeypatch):
    teacher, _, tokenizer = models
    expert = TeacherExpert(teacher, tokenizer, RULES)
    eos = tokenizer.eos_token_id
    fake = ([], [[eos], tokenizer(" red", add_special_tokens=False)["input_ids"] + [eos], [eos]])
    monkeypatch.setattr(teacher_module, "sample", lambda model, tokenizer, prompts, n, seed: (prompts, fake[1]))
    demonstrations = expert.demonstrations(3, seed=0)
    assert demonstrations["completion"] == [" red"]
    assert expert.empty_demonstrations == 2


def test_load_teacher_refuses_another_vocabulary_naming_the_directory(tmp_path, models, tiny_model_path):
    teacher, _, tokenizer = models
    teacher.save_pretrained(tmp_path / "teacher")
    assert load_teacher(tmp_path / "teacher", tokenizer, RULES).model.config.vocab_size == len(tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)  # a copy: the fixture's stays as it is
    tokenizer.add_tokens(["<|another|>"])
    size = len(tokenizer)
    with pytest.raises(ValueError, match=rf"teacher'.*vocabulary of {size - 1} tokens.*{size}: they must share"):
        load_teacher(tmp_path / "teacher", tokenizer, RULES)


def _record_teacher_trainings(monkeypatch) -> list[dict]:
    """The keyword arguments of every SFT run that trains a teacher from here on, in order."""
    trained = []
    original = teacher_module.SFTTrainer
    monkeypatch.setattr(
        teacher_module, "SFTTrainer", lambda *args, **kwargs: trained.append(kwargs) or original(*args, **kwargs)
    )
    return trained


def test_train_teacher_reuses_only_a_teacher_trained_with_the_same_settings(tmp_path, tiny_model_path, monkeypatch):
    demonstrations = RULES.demonstrations(8, seed=0)
    directory = tmp_path / "teacher"
    train_teacher(directory, tiny_model_path, demonstrations, steps=1, seed=0)
    assert json.loads((directory / teacher_module.TEACHER_RECORD_FILE).read_text())["steps"] == 1
    trained = _record_teacher_trainings(monkeypatch)
    train_teacher(directory, tiny_model_path, demonstrations, steps=1, seed=0)
    assert not trained
    train_teacher(directory, tiny_model_path, demonstrations, steps=2, seed=0)
    assert trained[0]["args"].max_steps == 2


def test_a_teacher_is_reused_from_a_base_of_the_same_architecture_in_another_folder(
    tmp_path, tiny_model_path, monkeypatch
):
    # Work folders that share one teacher each build the same base model in a folder of their own
    import shutil

    from transformers import AutoConfig, AutoTokenizer

    demonstrations = RULES.demonstrations(8, seed=0)
    directory = tmp_path / "teacher"
    train_teacher(directory, tiny_model_path, demonstrations, steps=1, seed=0)
    same_base = shutil.copytree(tiny_model_path, tmp_path / "elsewhere" / "large_base")
    trained = _record_teacher_trainings(monkeypatch)
    train_teacher(directory, same_base, demonstrations, steps=1, seed=0)
    assert not trained
    # Another architecture is another teacher, whatever the folder is called
    wider = build_tiny_causal_lm(AutoTokenizer.from_pretrained(tiny_model_path), hidden_size=48)
    wider.save_pretrained(tmp_path / "wider")
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(tmp_path / "wider")
    assert AutoConfig.from_pretrained(same_base).hidden_size != 48
    train_teacher(directory, tmp_path / "wider", demonstrations, steps=1, seed=0)
    assert len(trained) == 1


def test_distillation_is_a_method_of_the_distil_regime_only(tmp_path):
    assert "distillation" in default_methods("distil") and "distillation" not in default_methods("rules")
    assert "distillation" not in ComparisonSettings().methods
    assert "large_sft" not in default_methods("distil") + default_methods("memorise")
    # The other uses of the larger model and the frozen variants are asked for by name too
    for method in ("gail_frozen", "airl_frozen", "proxy_distillation", "proxy_sequence_distillation"):
        assert not any(method in default_methods(regime) for regime in ("memorise", "rules", "distil")), method
    assert default_methods("rules") == default_methods("memorise")
    assert not any("sdft" in default_methods(regime) for regime in ("memorise", "rules", "distil"))  # by name only
    with pytest.raises(ValueError, match="`distillation` needs a teacher's logits"):
        run_comparison(ComparisonSettings(methods=("distillation",)), tmp_path)


def test_distil_settings_use_a_student_smaller_than_its_teacher_and_the_measured_path():
    settings = ComparisonSettings.for_regime("distil")
    # SFT's best temperature is chosen from a grid of 0.3 to 1.0 (1.0: the `sft` row itself)
    assert settings.sft_temperatures == (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
    assert settings.hidden_size < settings.teacher_hidden_size
    assert settings.num_hidden_layers < settings.teacher_num_hidden_layers
    # GAIL from SFT's end with a teacher-sized SFT model as its discriminator, against SFT and both limits
    assert settings.disc_from_large_sft and settings.policy_from_sft_step is None
    assert settings.methods == ("sft", "gail", "oracle", "distillation")
    recipe = ComparisonSettings.for_regime("distil", disc_from_large_sft=False, policy_from_sft_step=750)
    assert recipe.policy_from_sft_step == 750 and not recipe.disc_from_large_sft


@pytest.mark.slow
def test_distil_comparison_trains_every_method_against_the_teacher(tmp_path):
    # TRL's experimental SDFTTrainer included: the model its own teacher, the demonstration in its prompt
    settings = ComparisonSettings.for_regime(
        "distil",
        num_demonstrations=16,
        sft_steps=4,
        adversarial_steps=1,
        eval_every=2,
        num_eval_prompts=4,
        hidden_size=32,
        num_hidden_layers=1,
        teacher_hidden_size=32,
        teacher_steps=4,
        # Fewer rows than demonstrations: TRL's DistillationTrainer drops an incomplete last batch
        adversarial_batch_size=8,
        methods=("sft", "gail", "oracle", "distillation", "sdft"),
    )
    results = run_comparison(settings, tmp_path, log=lambda *args: None)
    tempered = {f"sft_temperature_{temperature}" for temperature in settings.sft_temperatures}
    # Every other method's end at each of `method_temperatures` too
    tempered |= {
        f"{method}_temperature_{temperature}"
        for method in settings.methods
        if method != "sft"
        for temperature in settings.method_temperatures
    }
    assert settings.method_temperatures and set(results["methods"]) == {*settings.methods, *tempered}
    for method, result in results["methods"].items():
        final = result["final"]
        assert math.isfinite(final["reverse_kl"]) and final["reverse_kl_se"] > 0, method
        assert math.isfinite(final["forward_kl"]) and final["forward_kl_se"] > 0, method
        assert "invalid" not in final, method
    # The teacher is trained once, and the policy's tokenizer is its tokenizer
    assert (tmp_path / "teacher" / teacher_module.TEACHER_RECORD_FILE).is_file()
    assert results["empty_demonstrations"] >= 0
    assert "gail" in results_table(results) and "invalid" not in results_table(results)
    # The likelihood-ratio discriminator's q_phi is measured against the teacher like the policy
    assert results["methods"]["gail"]["discriminator_start"]["reverse_kl_se"] > 0


@pytest.mark.parametrize(
    ("demonstration_first", "template"), [(False, None), (True, "{privileged_context}\n\n{prompt}")]
)
def test_sdft_gets_the_demonstration_as_privileged_context_and_the_template_asked_for(
    tmp_path, monkeypatch, demonstration_first, template
):
    import trl.experimental.sdft as sdft

    received = {}

    class RecordingSDFTTrainer(sdft.SDFTTrainer):
        def __init__(self, *args, **kwargs):
            received.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sdft, "SDFTTrainer", RecordingSDFTTrainer)
    settings = ComparisonSettings(
        num_demonstrations=16,
        sft_steps=2,
        adversarial_steps=1,
        eval_every=2,
        num_eval_prompts=4,
        hidden_size=32,
        methods=("sft", "sdft"),
        sdft_demonstration_first=demonstration_first,
    )
    run_comparison(settings, tmp_path, log=lambda *args: None)
    dataset = received["train_dataset"]
    assert dataset["privileged_context"] == dataset["completion"]
    expected = template or sdft.SDFTConfig(output_dir=str(tmp_path), bf16=False).teacher_prompt_template
    assert received["args"].teacher_prompt_template == expected
    assert received["model"].endswith("/sft")  # from the SFT checkpoint
