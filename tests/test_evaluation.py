"""The evaluation on held-out demonstrations: each figure against a hand computation, and a learning signal."""

import copy
import math
import statistics

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_irl.evaluation import compare, evaluate, heldout_nll, report


@pytest.fixture(scope="module")
def models(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    judge = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    # Farther from the judge: its language-modelling head perturbed
    farther = copy.deepcopy(judge)
    torch.manual_seed(0)
    with torch.no_grad():
        farther.lm_head.weight.add_(0.5 * torch.randn_like(farther.lm_head.weight))
    return judge, farther, tokenizer


def _heldout(prompt_completion_dataset, count=8):
    return prompt_completion_dataset.select(range(count))


def test_heldout_nll_is_the_mean_per_token_of_the_demonstrations(models, prompt_completion_dataset):
    judge, _, tokenizer = models
    rows = _heldout(prompt_completion_dataset, 3)
    total, tokens = 0.0, 0
    for row in rows:
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        completion_ids = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = prompt_ids + completion_ids
        with torch.no_grad():
            log_probs = judge(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
        total -= sum(log_probs[t - 1, ids[t]].item() for t in range(len(prompt_ids), len(ids)))
        tokens += len(completion_ids)
    measured = heldout_nll(judge, tokenizer, rows["prompt"], rows["completion"], micro_batch_size=2)
    assert measured == pytest.approx(total / tokens, rel=1e-5)


def test_the_judge_itself_is_at_zero_and_a_model_farther_from_it_is_worse(models, prompt_completion_dataset):
    judge, farther, tokenizer = models
    results = evaluate(
        {"judge": judge, "farther": farther},
        tokenizer,
        _heldout(prompt_completion_dataset),
        judge=judge,
        temperatures=(1.0, 0.7),
        samples_per_prompt=3,
        max_new_tokens=8,
    )
    # At temperature 1 the judge's samples have log pi = log judge exactly: an estimate of 0
    at_one = results["judge"].readings[0]
    assert at_one.temperature == 1.0 and at_one.judge_reverse_kl == pytest.approx(0.0, abs=1e-5)
    # Below 1 the judge's own samples are sharper than it: a positive KL, so its best temperature is 1
    assert results["judge"].readings[1].judge_reverse_kl > 0 and results["judge"].best.temperature == 1.0
    # The perturbed model is farther from the judge, as its held-out NLL says too
    assert results["farther"].best.judge_reverse_kl > results["judge"].best.judge_reverse_kl + 0.1
    assert results["farther"].heldout_nll > results["judge"].heldout_nll
    paired = compare(results["judge"], results["farther"])
    assert paired["verdict"] == "better" and paired["interval"][1] < 0 and paired["prompts"] == 8
    assert paired["better_in_prompts"] == 8 and paired["temperatures"][0] == 1.0
    # Without a judge, by held-out NLL: paired by demonstration, the same direction as the pooled figures
    by_nll = compare(results["judge"], results["farther"], "heldout_nll")
    ours, theirs = results["judge"].heldout_nll_per_demonstration, results["farther"].heldout_nll_per_demonstration
    assert by_nll["mean"] == pytest.approx(statistics.fmean(ours) - statistics.fmean(theirs))
    assert by_nll["mean"] < 0 and by_nll["prompts"] == 8 and by_nll["temperatures"] is None
    with pytest.raises(ValueError, match="`metric`"):
        compare(results["judge"], results["farther"], "accuracy")


def test_checkers_length_and_ends_are_those_of_the_samples(models, prompt_completion_dataset, monkeypatch):
    import trl_irl.evaluation as evaluation

    judge, _, tokenizer = models
    eos = tokenizer.eos_token_id
    drawn = {}

    def fixed_samples(model, tokenizer, prompt_ids, n, temperature, max_new_tokens):
        # Per prompt: one sample that ended (3 tokens with EOS), one cut at max_new_tokens (4 tokens)
        samples = [[5, 6, eos], [7, 8, 9, 10]] * len(prompt_ids)
        drawn["count"] = len(samples)
        return samples

    monkeypatch.setattr(evaluation, "sample_completion_ids", fixed_samples)
    seen = []

    def checker(prompts, completions, completion_ids, **kwargs):
        seen.append((len(prompts), len(completions)))
        return [1.0 if ids[-1] == eos else 0.0 for ids in completion_ids]

    results = evaluate(
        {"model": judge},
        tokenizer,
        _heldout(prompt_completion_dataset, 2),
        checkers={"ended": checker},
        temperatures=(1.0,),
        samples_per_prompt=2,
        max_new_tokens=4,
    )
    reading = results["model"].readings[0]
    assert seen == [(4, 4)] and drawn["count"] == 4
    assert reading.checker_scores == {"ended": 0.5} and reading.ended_share == 0.5 and reading.mean_length == 3.5
    assert reading.judge_reverse_kl is None  # no judge given
    record = report(results)["model"]
    assert record["readings"][0]["checker/ended"] == 0.5 and not math.isnan(record["heldout_nll"])


def test_bad_held_out_data_is_named(models):
    judge, _, tokenizer = models
    with pytest.raises(ValueError, match="`prompt` and `completion`"):
        evaluate({"model": judge}, tokenizer, [{"text": "hello"}])


def test_the_command_compares_the_models_on_a_held_out_file(
    tmp_path, tiny_model_path, prompt_completion_dataset, capsys
):
    import json

    import yaml

    from trl_irl.cli import main

    heldout = tmp_path / "heldout.jsonl"
    prompt_completion_dataset.select(range(6)).to_json(heldout)
    config = {
        "models": [f"sft={tiny_model_path}", f"again={tiny_model_path}"],
        "dataset_name": str(heldout),
        "judge_model_name_or_path": tiny_model_path,
        "classifier_model_name_or_path": tiny_model_path,
        "temperatures": [1.0, 0.8],
        "samples_per_prompt": 2,
        "max_new_tokens": 6,
        "output": str(tmp_path / "evaluation.json"),
        "plot": str(tmp_path / "judge"),
    }
    (tmp_path / "evaluate.yaml").write_text(yaml.safe_dump(config))
    main(["evaluate", "--config", str(tmp_path / "evaluate.yaml")])
    assert (tmp_path / "judge.svg").is_file() and (tmp_path / "judge.png").is_file()
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(record["models"]) == {"sft", "again"}
    # The same model twice, with the same draws: the same figures, a difference of exactly 0
    assert record["models"]["sft"] == record["models"]["again"]
    assert 0 <= record["models"]["sft"]["two_sample"]["accuracy"] <= 1
    # Each model against the first by held-out NLL and, with a judge, by its reverse KL
    assert [comparison["metric"] for comparison in record["comparisons"]] == ["heldout_nll", "judge_reverse_kl"]
    for comparison in record["comparisons"]:
        assert comparison["mean"] == 0.0 and comparison["verdict"] == "within noise"
    printed = capsys.readouterr().out
    assert "| sft |" in printed and "again minus sft" in printed


def test_the_command_refuses_a_model_of_another_vocabulary(tmp_path, tiny_model_path, prompt_completion_dataset):
    import yaml

    from trl_irl.benchmark.tiny_models import build_tiny_tokenizer, save_tiny_model
    from trl_irl.cli import main

    # Sampled and scored in the first model's tokens, it would read them as other words, with no error
    other = save_tiny_model(
        tmp_path / "other", build_tiny_tokenizer(["another corpus altogether"] * 8, vocab_size=300)
    )
    prompt_completion_dataset.select(range(4)).to_json(tmp_path / "heldout.jsonl")
    config = {"models": [f"sft={tiny_model_path}", f"other={other}"], "dataset_name": str(tmp_path / "heldout.jsonl")}
    (tmp_path / "evaluate.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="the model 'other' at .* has another vocabulary than the first model's"):
        main(["evaluate", "--config", str(tmp_path / "evaluate.yaml")])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"dataset_name": "heldout.jsonl"}, "`models` is required"),
        ({"models": ["./no/such/model"], "dataset_name": "heldout.jsonl"}, "does not exist"),
        ({"models": ["MODEL"]}, "`dataset_name`"),
    ],
)
def test_the_command_names_what_is_missing(tmp_path, tiny_model_path, config, message):
    import yaml

    from trl_irl.cli import main

    config = {key: [tiny_model_path] if value == ["MODEL"] else value for key, value in config.items()}
    (tmp_path / "evaluate.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match=message):
        main(["evaluate", "--config", str(tmp_path / "evaluate.yaml")])


class TestTwoSampleTest:
    def test_it_tells_apart_what_differs_and_not_what_does_not(self, tiny_model_path):
        from helpers import counting_texts

        from trl_irl.evaluation import two_sample_test

        # Counting demonstrations against the same prompts counted wrongly: learnable (test_discriminator). Measured:
        # accuracy 0.61 [0.56, 0.66] on the 384 held-out texts after 8 epochs (0.64 after 16)
        demonstrations, wrong = counting_texts(range(384))
        told = two_sample_test(demonstrations, wrong, tiny_model_path, epochs=8, learning_rate=3e-3)
        assert told["interval"][0] > 0.5 and told["heldout_texts"] == 384
        # Demonstrations against other demonstrations (of other prompts): nothing to tell, so the interval holds 0.5
        first, _ = counting_texts(range(216))
        second, _ = counting_texts(range(216, 432))
        untold = two_sample_test(first, second, tiny_model_path, epochs=8, learning_rate=3e-3)
        assert untold["interval"][0] <= 0.5 <= untold["interval"][1]

    def test_too_few_or_unpaired_texts_are_refused(self, tiny_model_path):
        from trl_irl.evaluation import two_sample_test

        with pytest.raises(ValueError, match="one sample per demonstration"):
            two_sample_test(["a", "b", "c", "d"], ["a", "b", "c"], tiny_model_path)
