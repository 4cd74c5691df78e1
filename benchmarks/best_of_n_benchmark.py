"""
Best-of-N with a learned reward against plain sampling and sampling at temperature 0.6, on unseen prompts of the
synthetic rule expert (the `rules` regime) or of the distil regime's teacher, where the expert's log-likelihood of
every response is exact.

    python benchmarks/best_of_n_benchmark.py --seeds 3 [--work-dir runs] [--regime rules]

Per seed, one SFT run of the regime (reused when its checkpoint exists, as the sweep does) gives the sampling model
(the run's end) and the rewards:
- `ratio`: `LikelihoodRatioReward(end, middle)`, `log pi_end - log pi_middle`, the extrapolation that the
  two-checkpoint recipe's discriminator starts from (Inverse-RLignment's `log pi_SFT - log pi_init`);
- `self`: `LikelihoodReward(end)`, the sampling model scoring itself (picks its likeliest sample);
- where the work directory holds a sweep's `large_sft` (distil regime): `large_ratio`,
  `LikelihoodRatioReward(large_sft, end)` (the reward GAIL starts from with the larger discriminator), and `large`,
  `LikelihoodReward(large_sft)`;
- where it holds a sweep's `airl` (its `reward_model/`): `airl`, `LikelihoodReward(reward_model)`, AIRL's learned
  `f_theta = log q_phi` (with the distil defaults, `large_sft` after the adversarial updates).
`ratio` needs SFT's middle checkpoint, which the distil regime's defaults do not save: without it, it is left out.
Each condition samples from SFT's end and is measured on the same held-out prompts by the expert's exact
log-likelihood of the chosen response (smoothed as in the divergences: an invalid response gets `INVALID_MASS`), with
its standard error over prompts, and by the share of valid responses (the distil regime has none: there every
response has its exact teacher log-likelihood). Differences are paired within seeds.
Writes `best_of_n_results.json` in the work directory.
"""

import argparse
import dataclasses
import json
import math
import os
import statistics
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _expert_scores(expert, tokenizer, prompts, completions, completion_ids) -> list[tuple[float, bool]]:
    """The smoothed expert's log-likelihood of each response, and whether it is one of the expert's (canonical)."""
    from trl_irl.benchmark.synthetic import INVALID_MASS

    scores = []
    for prompt, completion, ids in zip(prompts, completions, completion_ids, strict=True):
        probability = expert.distribution(prompt).get(completion)
        canonical = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        valid = bool(probability) and list(ids) == canonical
        scores.append((math.log((1 - INVALID_MASS) * probability) if valid else math.log(INVALID_MASS), valid))
    return scores


def _teacher_scores(teacher, prompts, completions, completion_ids) -> list[tuple[float, None]]:
    """The distil regime's teacher's exact log-likelihood of each response (no response is invalid there)."""
    from trl_irl.benchmark.teacher import sequence_log_probs

    return [(score, None) for score in sequence_log_probs(teacher.model, teacher.tokenizer, prompts, completion_ids)]


def _condition(model, tokenizer, score, prompts, reward, n, temperature, seed) -> dict:
    from trl_irl import best_of_n

    def no_preference(prompts, completions, completion_ids, **kwargs):
        return [0.0] * len(completions)  # with n=1 the one sample is kept: plain sampling

    started = time.perf_counter()
    kept = best_of_n(
        model, tokenizer, prompts, reward or no_preference, n=n, temperature=temperature, max_new_tokens=12, seed=seed
    )
    seconds = time.perf_counter() - started
    scores = score(kept["prompt"], kept["completion"], kept["completion_ids"])
    log_likelihoods = [score for score, _ in scores]
    return {
        "expert_log_likelihood": statistics.fmean(log_likelihoods),
        "standard_error": statistics.stdev(log_likelihoods) / math.sqrt(len(log_likelihoods)),
        "valid": None if scores[0][1] is None else statistics.fmean(valid for _, valid in scores),
        "seconds": round(seconds, 1),
        "per_prompt": log_likelihoods,
    }


def run_seed(
    regime: str, seed: int, work_dir: Path, num_prompts: int, log=print, eval_every: int | None = None
) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    from trl_irl import LikelihoodRatioReward, LikelihoodReward
    from trl_irl.benchmark.comparison import ComparisonSettings, run_comparison
    from trl_irl.benchmark.synthetic import SyntheticExpert
    from trl_irl.benchmark.teacher import load_teacher

    overrides = {} if eval_every is None else {"eval_every": eval_every}
    settings = ComparisonSettings.for_regime(regime, seed=seed, methods=("sft",), sft_temperatures=(), **overrides)
    if settings.policy_from_sft_step is None:  # the memorise regime: save the middle checkpoint too
        settings = dataclasses.replace(settings, policy_from_sft_step=settings.sft_steps // 2)
    output_dir = work_dir / f"{regime}-{settings.num_demonstrations}-seed{seed}"
    run_comparison(settings, output_dir, log=log)
    end_path = output_dir / "sft"
    middle_path = end_path / f"{PREFIX_CHECKPOINT_DIR}-{settings.policy_from_sft_step}"
    end = AutoModelForCausalLM.from_pretrained(end_path)
    tokenizer = AutoTokenizer.from_pretrained(end_path)
    expert = SyntheticExpert("rules" if regime == "distil" else regime, seed=seed)
    # The demonstrations' prompts (`SyntheticExpert.demonstrations` draws them so; in the distil regime the teacher
    # answers the same draw)
    training_prompts = set(expert.prompts(settings.num_demonstrations, seed))
    prompts = expert.evaluation_prompts(num_prompts, seed=seed + 20_000, training_prompts=training_prompts)
    if regime == "distil":
        teacher = load_teacher(output_dir / "teacher", tokenizer, expert)

        def score(prompts, completions, completion_ids):
            return _teacher_scores(teacher, prompts, completions, completion_ids)
    else:

        def score(prompts, completions, completion_ids):
            return _expert_scores(expert, tokenizer, prompts, completions, completion_ids)

    rewards = {"self": LikelihoodReward(end, tokenizer)}
    if middle_path.is_dir():  # a sweep whose SFT saved no middle checkpoint (the distil defaults) has no `ratio`
        middle = AutoModelForCausalLM.from_pretrained(middle_path)
        rewards = {"ratio": LikelihoodRatioReward(end, middle, tokenizer)} | rewards
    else:
        log(f"[seed {seed}] no {middle_path.name} in {end_path}: no `ratio` reranker")
    if (output_dir / "large_sft" / "model.safetensors").is_file():
        # The distil regime's larger SFT model (a sweep's `large_sft`): GAIL's best discriminator there, as a reranker
        large = AutoModelForCausalLM.from_pretrained(output_dir / "large_sft")
        rewards |= {
            "large_ratio": LikelihoodRatioReward(large, end, tokenizer),
            "large": LikelihoodReward(large, tokenizer),
        }
    if (output_dir / "airl" / "reward_model" / "model.safetensors").is_file():
        # A sweep's AIRL (with the distil defaults, `large_sft` as its discriminator): the reward model it leaves,
        # `f_theta = log q_phi` after the adversarial updates, against `large`, the same model before them
        airl = AutoModelForCausalLM.from_pretrained(output_dir / "airl" / "reward_model")
        rewards["airl"] = LikelihoodReward(airl, tokenizer)
    conditions = {"sample": (None, 1, 1.0), "sample_t0.6": (None, 1, 0.6)}
    for n in (4, 16):
        for name in rewards:
            conditions[f"best_of_{n}_{name}"] = (name, n, 1.0)
    results = {}
    for condition, (reward_name, n, temperature) in conditions.items():
        reward = rewards[reward_name] if reward_name else None
        results[condition] = _condition(end, tokenizer, score, prompts, reward, n, temperature, seed)
        valid = results[condition]["valid"]
        log(
            f"[seed {seed}] {condition}: expert log-likelihood {results[condition]['expert_log_likelihood']:.3f} "
            f"+- {results[condition]['standard_error']:.3f}" + ("" if valid is None else f", valid {valid:.2f}")
        )
    return results


def paired(results: dict, condition: str, baseline: str) -> dict:
    """Per seed, the condition's mean expert log-likelihood minus the baseline's, with the paired standard error."""
    rows = []
    for seed_results in results.values():
        differences = [
            a - b
            for a, b in zip(seed_results[condition]["per_prompt"], seed_results[baseline]["per_prompt"], strict=True)
        ]
        rows.append((statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(len(differences))))
    return {"differences": rows, "seeds_better": sum(mean > 0 for mean, _ in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regime", default="rules", choices=["memorise", "rules", "distil"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="Seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--work-dir", default="runs")
    parser.add_argument(
        "--eval-every",
        type=int,
        help="The SFT runs' evaluation interval, where it differs from the regime's: SFT checkpoints are reused only "
        "from runs with the same settings (benchmarks/counterfactuals.py's later seeds used 480).",
    )
    args = parser.parse_args()
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = {
        seed: run_seed(args.regime, seed, work_dir, args.num_prompts, eval_every=args.eval_every) for seed in seeds
    }
    summary = {
        f"{condition} - {baseline}": paired(results, condition, baseline)
        for condition in next(iter(results.values()))
        if condition.startswith("best_of_")
        for baseline in ("sample", "sample_t0.6")
    }
    for name, row in summary.items():
        cells = ", ".join(f"{mean:+.3f} +- {error:.3f}" for mean, error in row["differences"])
        print(f"{name:34s} {cells}   better in {row['seeds_better']} of {len(results)} seeds")
    output = {"regime": args.regime, "num_prompts": args.num_prompts, "results": results, "paired": summary}
    (work_dir / f"best_of_n_results-{args.regime}.json").write_text(json.dumps(output, indent=1))


if __name__ == "__main__":
    main()
