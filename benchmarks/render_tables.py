"""The results tables of README.md and docs/benchmarks.md, rendered from the JSON in docs/results/.

    python benchmarks/render_tables.py           # rewrite every table in place
    python benchmarks/render_tables.py --check   # exit 1 where a table differs from what its JSON gives

A table sits between `<!-- table: NAME -->` and `<!-- /table -->` in a Markdown file; the text between is replaced by
`TABLES[NAME]()`. Every figure in a table is computed here from a results JSON: a comparison is paired within seeds
(`trl_irl.benchmark.paired`: the mean difference with its 95% t-interval over seeds, and in how many seeds the method
was better); words written here (`Row.note`) carry no figures, so that no figure can drift from its data
(tests/test_rendered_tables.py re-renders every table and fails where one differs, and refuses a note with a digit).
"""

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "gail_trainer.md")
sys.path.insert(0, str(ROOT))

from trl_irl.benchmark.choices import REGIMES  # noqa: E402
from trl_irl.benchmark.paired import add_best_temperature_rows, paired_statistics  # noqa: E402


# The counterfactuals of issues 33 and 34 (benchmarks/counterfactuals.py report), and the order their rows are shown in
COUNTERFACTUALS = "counterfactuals_distil_2048"
MEMORISE_COUNTERFACTUALS = "counterfactuals_memorise_32"
# Four times the adversarial steps (480), trained against frozen, and GAD
MEMORISE_LONG = "counterfactuals_memorise_32_480_steps"
# A base pretrained on every rule, 128 demonstrations of a narrower expert, SFT early-stopped (issue 34)
PRETRAINED_COUNTERFACTUALS = "counterfactuals_pretrained_128"
COUNTERFACTUAL_ORDER = (
    "sft",
    "sft_best_temperature",
    "large_sft",
    "large_sft_best_temperature",
    "gail",
    "gail_frozen",
    "airl",
    "airl_frozen",
    "gad",
    "proxy_distillation",
    "proxy_distillation_jsd",
    "proxy_sequence_distillation",
    "distillation",
    "oracle",
    "checker",
    "checker_kl",
    "checker_gail_frozen",
    "checker_gail",
    "gail_best_temperature",
    "gail_frozen_best_temperature",
    "airl_best_temperature",
    "airl_frozen_best_temperature",
    "gad_best_temperature",
    "proxy_distillation_best_temperature",
    "proxy_distillation_jsd_best_temperature",
    "proxy_sequence_distillation_best_temperature",
    "distillation_best_temperature",
)


def _in_order(summary: dict) -> list[str]:
    """The rows of a counterfactuals summary in `COUNTERFACTUAL_ORDER` (temperature rows left out)."""
    return [name for name in COUNTERFACTUAL_ORDER if name in summary]


def seed_rows(stems: str, count: str | None = None) -> dict[int, dict[str, dict]]:
    """
    Each seed's final metrics per row of the results JSON `stems` (several joined by `+`, merged by seed): an
    imitation sweep's (`runs[row][count]` in seed order from `first_seed`), a counterfactuals report's, or one whose
    `runs[row]` is a list in seed order from 0 (`variance_reward_benchmark.py`).
    """
    by_seed: dict[int, dict[str, dict]] = {}
    for stem in stems.split("+"):
        record = json.loads((RESULTS / f"{stem}.json").read_text())
        if "pairs" in record:  # a counterfactuals report: `runs[seed][row]`
            for seed, rows in record["runs"].items():
                by_seed.setdefault(int(seed), {}).update(rows)
            continue
        first_seed = record["args"].get("first_seed") or 0
        for row, by_count in record["runs"].items():
            if isinstance(by_count, list):
                runs = by_count
            else:
                runs = by_count[count] if count is not None else next(iter(by_count.values()))
            for index, final in enumerate(runs):
                by_seed.setdefault(first_seed + index, {})[row] = final
    for rows in by_seed.values():
        if not any(name.endswith("_best_temperature") for name in rows):  # a counterfactuals report has them
            add_best_temperature_rows(rows)
    return by_seed


def best_of_n_rows(stems: str) -> dict[int, dict[str, dict]]:
    """
    A Best-of-N JSON's conditions per seed (several joined by `+`, merged by seed), each with its mean expert
    log-likelihood (higher is better).
    """
    by_seed = {}
    for stem in stems.split("+"):
        record = json.loads((RESULTS / f"{stem}.json").read_text())
        by_seed |= {int(seed): conditions for seed, conditions in record["results"].items()}
    return by_seed


@dataclass(frozen=True)
class Paired:
    """`method` against `reference` on `metric`, each `FILE:ROW` (FILE: a results stem, or several joined by +)."""

    method: str
    reference: str
    metric: str = "reverse_kl"
    count: str | None = None
    # Best-of-N JSONs: conditions compared by the expert's log-likelihood of the chosen response
    best_of_n: bool = False
    # Where a higher `metric` is better (an accuracy)
    higher_is_better: bool = False

    def statistics(self) -> dict:
        (method_file, method_row), (reference_file, reference_row) = (
            self.method.rsplit(":", 1),
            self.reference.rsplit(":", 1),
        )
        if self.best_of_n:
            method_runs, reference_runs = best_of_n_rows(method_file), best_of_n_rows(reference_file)
            metric = "expert_log_likelihood"
        else:
            method_runs, reference_runs = seed_rows(method_file, self.count), seed_rows(reference_file, self.count)
            metric = self.metric
        seeds = sorted(
            seed
            for seed in method_runs.keys() & reference_runs.keys()
            if method_row in method_runs[seed] and reference_row in reference_runs[seed]
        )
        differences = [method_runs[s][method_row][metric] - reference_runs[s][reference_row][metric] for s in seeds]
        result = paired_statistics(differences, lower_is_better=not (self.best_of_n or self.higher_is_better))
        if result is None:
            raise ValueError(f"{self}: fewer than 2 seeds in common")
        return {"seeds": seeds, **result}

    def cell(self, label: str = "") -> str:
        """`label: better in k of n, mean [low, high] metric`, with the verdict where the interval excludes 0."""
        result = self.statistics()
        units = {
            "reverse_kl": "reverse KL",
            "forward_kl": "forward KL",
            "accuracy_true_order": "accuracy",
            "checker_score": "checker score",
        }
        unit = units.get(self.metric) or units[self.metric.removeprefix("discriminator_")] + " of the discriminator"
        unit = "log-likelihood" if self.best_of_n else unit
        low, high = result["interval"]
        verdict = {"better": "**better**", "worse": "**worse**", "within noise": "within noise"}[result["verdict"]]
        text = (
            f"better in {result['better_in']} of {len(result['seeds'])}, {unit} {result['mean']:+.3f} "
            f"[{low:+.3f}, {high:+.3f}]: {verdict}"
        )
        return f"{label}: {text}" if label else text


@dataclass(frozen=True)
class Row:
    """A summary row: words (no figures), and the paired comparisons that make its result."""

    trainer: str
    against: str
    regime: str
    comparisons: tuple[tuple[str, Paired], ...]
    details: str
    note: str = ""

    def seeds(self) -> int:
        return max(len(comparison.statistics()["seeds"]) for _, comparison in self.comparisons)

    def result(self) -> str:
        cells = "; ".join(comparison.cell(label) for label, comparison in self.comparisons)
        return cells + (f". {self.note}" if self.note else "")


ONE_THREAD = "imitation_sweep_distil_2048_gail_oracle_one_thread"
AIRL_ONE_THREAD = "imitation_sweep_distil_2048_airl_large_sft_discriminator"
FROZEN_ONE_THREAD = "imitation_sweep_distil_2048_large_sft_discriminator_frozen_one_thread"
LARGE = "imitation_sweep_distil_2048_large_sft_discriminator"
BEST_OF_N = "best_of_n_distil_2048_one_thread"
# Best-of-N on the counterfactuals' seeds (3 to 7: the same SFT and larger models)
BEST_OF_N_5 = "best_of_n_distil_2048_counterfactuals"
C = COUNTERFACTUALS


def _versus_best_sft(method: str) -> Paired:
    return Paired(f"{C}:{method}", f"{C}:sft_best_temperature")


# The counterfactuals first: every use of the same larger SFT model, 5 seeds none of which chose a setting
COUNTERFACTUAL_ROWS = (
    Row(
        "`GAILTrainer`, the larger SFT model as `discriminator`, trained",
        "SFT at its best temperature (0.3 to 1.0, per seed)",
        "distil, 2048 demonstrations",
        (("", _versus_best_sft("gail")), ("forward", Paired(f"{C}:gail", f"{C}:sft_best_temperature", "forward_kl"))),
        "#every-use-of-the-larger-model",
    ),
    Row(
        "the same, frozen (`disc_updates_per_generation=0`)",
        "SFT at its best temperature; GAIL trained",
        "distil, 2048",
        (("", _versus_best_sft("gail_frozen")), ("trained minus frozen", Paired(f"{C}:gail", f"{C}:gail_frozen"))),
        "#every-use-of-the-larger-model",
    ),
    Row(
        "`AIRLTrainer`, the larger SFT model as `discriminator`, trained and frozen",
        "SFT at its best temperature; each other; `DistillationTrainer` with the larger model as teacher",
        "distil, 2048",
        (
            ("trained", _versus_best_sft("airl")),
            ("frozen", _versus_best_sft("airl_frozen")),
            ("trained minus frozen", Paired(f"{C}:airl", f"{C}:airl_frozen")),
            ("trained minus the distillation", Paired(f"{C}:airl", f"{C}:proxy_distillation")),
            ("frozen minus the distillation", Paired(f"{C}:airl_frozen", f"{C}:proxy_distillation")),
        ),
        "#every-use-of-the-larger-model",
    ),
    Row(
        "TRL's `DistillationTrainer`, the larger SFT model as `teacher_model`",
        "SFT at its best temperature; GAIL trained",
        "distil, 2048",
        (
            ("", _versus_best_sft("proxy_distillation")),
            ("GAIL minus it", Paired(f"{C}:gail", f"{C}:proxy_distillation")),
        ),
        "#every-use-of-the-larger-model",
    ),
    Row(
        "the same at TRL's generalised JSD (`beta=0.5`) instead of reverse KL",
        "SFT at its best temperature; the same at reverse KL",
        "distil, 2048",
        (
            ("", _versus_best_sft("proxy_distillation_jsd")),
            ("minus reverse KL", Paired(f"{C}:proxy_distillation_jsd", f"{C}:proxy_distillation")),
            (
                "minus reverse KL, forward",
                Paired(f"{C}:proxy_distillation_jsd", f"{C}:proxy_distillation", "forward_kl"),
            ),
        ),
        "#every-use-of-the-larger-model",
    ),
    Row(
        "TRL's `SFTTrainer` on the larger SFT model's samples",
        "SFT at its best temperature; GAIL trained",
        "distil, 2048",
        (
            ("", _versus_best_sft("proxy_sequence_distillation")),
            ("GAIL minus it", Paired(f"{C}:gail", f"{C}:proxy_sequence_distillation")),
        ),
        "#every-use-of-the-larger-model",
    ),
    Row(
        "the larger SFT model itself, at its best temperature",
        "SFT at its best temperature",
        "distil, 2048",
        (("", _versus_best_sft("large_sft_best_temperature")),),
        "#every-use-of-the-larger-model",
    ),
    Row(
        "each sampled at its best temperature: GAIL, and `DistillationTrainer` with the larger model as teacher",
        "SFT at its best temperature; each other",
        "distil, 2048 (seeds 5 to 7, whose runs sampled every method's end at 0.3 to 1.0)",
        (
            ("GAIL", _versus_best_sft("gail_best_temperature")),
            ("distillation from the larger model", _versus_best_sft("proxy_distillation_best_temperature")),
            (
                "GAIL minus it",
                Paired(f"{C}:gail_best_temperature", f"{C}:proxy_distillation_best_temperature"),
            ),
        ),
        "#every-use-of-the-larger-model",
    ),
    Row(
        "Best-of-16 reranked by the larger SFT model's likelihood",
        "the student reranking its own 16 samples; SFT sampled at temperature 0.6",
        "distil, 2048, 256 unseen prompts",
        (
            (
                "minus the student's own",
                Paired(f"{BEST_OF_N_5}:best_of_16_large", f"{BEST_OF_N_5}:best_of_16_self", best_of_n=True),
            ),
            (
                "minus temperature 0.6",
                Paired(f"{BEST_OF_N_5}:best_of_16_large", f"{BEST_OF_N_5}:sample_t0.6", best_of_n=True),
            ),
            (
                "the student's own minus temperature 0.6",
                Paired(f"{BEST_OF_N_5}:best_of_16_self", f"{BEST_OF_N_5}:sample_t0.6", best_of_n=True),
            ),
        ),
        "#does-a-learned-reward-help-as-a-reranker",
    ),
    Row(
        "TRL's `DistillationTrainer` with the teacher's own logits (the white-box ceiling)",
        "SFT at its best temperature; the larger model as teacher",
        "distil, 2048",
        (
            ("", _versus_best_sft("distillation")),
            ("minus the proxy", Paired(f"{C}:distillation", f"{C}:proxy_distillation")),
        ),
        "#every-use-of-the-larger-model",
    ),
)
M, L = MEMORISE_COUNTERFACTUALS, MEMORISE_LONG


def _memorise_versus_best_sft(method: str, stem: str = M) -> Paired:
    return Paired(f"{stem}:{method}", f"{stem}:sft_best_temperature")


# The same uses of a larger SFT model where the prompts are memorised (32 demonstrations of 8 prompts), and GAD's
# discriminator beside them; then four times the adversarial steps
MEMORISE_ROWS = (
    Row(
        "`GAILTrainer`, the larger SFT model as `discriminator`, trained and frozen",
        "SFT at its best temperature (0.3 to 1.0, per seed); each other",
        "memorise, 32 demonstrations",
        (
            ("trained", _memorise_versus_best_sft("gail")),
            ("frozen", _memorise_versus_best_sft("gail_frozen")),
            ("trained minus frozen", Paired(f"{M}:gail", f"{M}:gail_frozen")),
            ("trained, forward", Paired(f"{M}:gail", f"{M}:sft_best_temperature", "forward_kl")),
        ),
        "#the-memorise-regime-every-use-of-the-larger-model-and-gad",
    ),
    Row(
        "`AIRLTrainer`, the same, trained and frozen",
        "SFT at its best temperature; each other",
        "memorise, 32",
        (
            ("trained", _memorise_versus_best_sft("airl")),
            ("frozen", _memorise_versus_best_sft("airl_frozen")),
            ("trained minus frozen", Paired(f"{M}:airl", f"{M}:airl_frozen")),
        ),
        "#the-memorise-regime-every-use-of-the-larger-model-and-gad",
    ),
    Row(
        "TRL's `DistillationTrainer`, the larger SFT model as `teacher_model`, at reverse KL and at JSD",
        "SFT at its best temperature; GAIL trained",
        "memorise, 32",
        (
            ("reverse KL", _memorise_versus_best_sft("proxy_distillation")),
            ("JSD", _memorise_versus_best_sft("proxy_distillation_jsd")),
            ("GAIL minus the reverse-KL one", Paired(f"{M}:gail", f"{M}:proxy_distillation")),
        ),
        "#the-memorise-regime-every-use-of-the-larger-model-and-gad",
    ),
    Row(
        "TRL's `SFTTrainer` on the larger SFT model's samples; the larger model itself",
        "SFT at its best temperature",
        "memorise, 32",
        (
            ("on its samples", _memorise_versus_best_sft("proxy_sequence_distillation")),
            ("itself, at its best temperature", _memorise_versus_best_sft("large_sft_best_temperature")),
        ),
        "#the-memorise-regime-every-use-of-the-larger-model-and-gad",
    ),
    Row(
        "`GAILTrainer` with GAD's discriminator (pairwise, on the policy's own start)",
        "SFT at its best temperature; GAIL with the larger model, trained",
        "memorise, 32",
        (
            ("", _memorise_versus_best_sft("gad")),
            ("forward", Paired(f"{M}:gad", f"{M}:sft_best_temperature", "forward_kl")),
            ("minus GAIL", Paired(f"{M}:gad", f"{M}:gail")),
        ),
        "#the-memorise-regime-every-use-of-the-larger-model-and-gad",
    ),
    Row(
        "GRPO with the exact reward (the oracle: the headroom)",
        "SFT at its best temperature",
        "memorise, 32",
        (("", _memorise_versus_best_sft("oracle")),),
        "#the-memorise-regime-every-use-of-the-larger-model-and-gad",
    ),
)
# Four times the adversarial steps: does a frozen reward get gamed, does the co-trained one hold?
LONG_ROWS = (
    Row(
        "the same methods for four times the steps (480): GAIL trained and frozen, GAD",
        "SFT at its best temperature; each other",
        "memorise, 32, long runs",
        (
            ("GAIL trained", _memorise_versus_best_sft("gail", L)),
            ("frozen", _memorise_versus_best_sft("gail_frozen", L)),
            ("trained minus frozen", Paired(f"{L}:gail", f"{L}:gail_frozen")),
            ("trained minus frozen, forward", Paired(f"{L}:gail", f"{L}:gail_frozen", "forward_kl")),
            ("GAD", _memorise_versus_best_sft("gad", L)),
        ),
        "#long-runs-does-a-frozen-reward-get-gamed",
    ),
)
P = PRETRAINED_COUNTERFACTUALS


def _versus(stem: str, method: str, reference: str = "sft_best_temperature", metric: str = "reverse_kl") -> Paired:
    """`method` against `reference` (SFT at its best temperature unless said) in one counterfactuals report."""
    return Paired(f"{stem}:{method}", f"{stem}:{reference}", metric)


# A pretrained base, few demonstrations, no larger model: the discriminator is the policy's own start (a frozen one
# would leave the policy SFT's, so trained against frozen is against SFT's end at temperature 1)
PRETRAINED_ROWS = (
    Row(
        "`GAILTrainer` and `AIRLTrainer`, the default likelihood ratio from the policy's start",
        "SFT at its best temperature; SFT's end (what frozen gives)",
        "pretrained base, 128 demonstrations",
        (
            ("GAIL", _versus(P, "gail")),
            ("GAIL, forward", _versus(P, "gail", metric="forward_kl")),
            ("AIRL", _versus(P, "airl")),
            ("GAIL minus SFT's end", _versus(P, "gail", "sft")),
            ("GAIL minus SFT's end, forward", _versus(P, "gail", "sft", "forward_kl")),
            ("AIRL minus SFT's end", _versus(P, "airl", "sft")),
            ("GAIL at its best temperature", _versus(P, "gail_best_temperature")),
        ),
        "#the-pretrained-regime-a-base-that-knows-the-rules-few-demonstrations",
    ),
    Row(
        "`GAILTrainer` with GAD's discriminator (pairwise, on the policy's start)",
        "SFT at its best temperature; GAIL",
        "pretrained base, 128",
        (
            ("", _versus(P, "gad")),
            ("forward", _versus(P, "gad", metric="forward_kl")),
            ("minus GAIL", _versus(P, "gad", "gail")),
        ),
        "#the-pretrained-regime-a-base-that-knows-the-rules-few-demonstrations",
    ),
    Row(
        "GRPO with the exact reward (the oracle: the headroom)",
        "SFT at its best temperature",
        "pretrained base, 128",
        (("", _versus(P, "oracle")), ("forward", _versus(P, "oracle", metric="forward_kl"))),
        "#the-pretrained-regime-a-base-that-knows-the-rules-few-demonstrations",
    ),
)
# Unseen prompts of a rule expert, no larger model: the two-checkpoint recipe (the policy from the middle of one SFT
# run, the discriminator from its end), trained and frozen, on 8 seeds that chose no setting
RULES_COUNTERFACTUALS = "counterfactuals_rules_2048"
R = RULES_COUNTERFACTUALS


RULES_ROWS = (
    Row(
        "`GAILTrainer`, two checkpoints of one SFT run (the policy from its middle, the discriminator from its end)",
        "SFT at its best temperature; SFT's end; the same discriminator frozen",
        "rules, 2048, unseen prompts",
        (
            ("", _versus(R, "gail")),
            ("forward", _versus(R, "gail", metric="forward_kl")),
            ("minus SFT's end", _versus(R, "gail", "sft")),
            ("minus frozen", _versus(R, "gail", "gail_frozen")),
            ("frozen", _versus(R, "gail_frozen")),
            ("at its best temperature", _versus(R, "gail_best_temperature")),
            ("at its best temperature, forward", _versus(R, "gail_best_temperature", metric="forward_kl")),
        ),
        "#the-rules-regime-again-eight-seeds-the-two-checkpoint-recipe-and-the-proxies",
    ),
    Row(
        "`AIRLTrainer`, the same two checkpoints",
        "SFT at its best temperature; SFT's end",
        "rules, 2048",
        (
            ("", _versus(R, "airl")),
            ("forward", _versus(R, "airl", metric="forward_kl")),
            ("minus SFT's end", _versus(R, "airl", "sft")),
        ),
        "#the-rules-regime-again-eight-seeds-the-two-checkpoint-recipe-and-the-proxies",
    ),
    Row(
        "GRPO with the exact reward (the oracle: the headroom)",
        "SFT at its best temperature",
        "rules, 2048",
        (("", _versus(R, "oracle")), ("forward", _versus(R, "oracle", metric="forward_kl"))),
        "#the-rules-regime-again-eight-seeds-the-two-checkpoint-recipe-and-the-proxies",
    ),
)
# Earlier readings, 3 seeds each (seeds 0 to 2 chose the distil settings)
EARLIER_ROWS = (
    Row(
        "`GAILTrainer`, a larger SFT model as `discriminator`",
        "SFT at its best temperature (1.0, 0.8 or 0.6)",
        "distil, 2048, first reading (two threads)",
        (("", Paired(f"{LARGE}:gail", f"{LARGE}:sft_best_temperature")),),
        "#does-adversarial-imitation-beat-sft",
    ),
    Row(
        "`GAILTrainer` and `AIRLTrainer`, the same setting, second reading (one thread)",
        "SFT at its best temperature (1.0, 0.8 or 0.6)",
        "distil, 2048",
        (
            ("GAIL", Paired(f"{ONE_THREAD}:gail", f"{ONE_THREAD}:sft_best_temperature")),
            ("AIRL", Paired(f"{AIRL_ONE_THREAD}:airl", f"{AIRL_ONE_THREAD}:sft_best_temperature")),
        ),
        "#does-adversarial-imitation-beat-sft",
    ),
    Row(
        "`GAILTrainer`, the larger discriminator frozen",
        "SFT at its best temperature; the same trained",
        "distil, 2048, two readings",
        (
            ("one thread", Paired(f"{FROZEN_ONE_THREAD}:gail", f"{FROZEN_ONE_THREAD}:sft_best_temperature")),
            ("trained minus frozen, one thread", Paired(f"{ONE_THREAD}:gail", f"{FROZEN_ONE_THREAD}:gail")),
            (
                "trained minus frozen, two threads",
                Paired(f"{LARGE}:gail", "imitation_sweep_distil_2048_large_sft_discriminator_frozen:gail"),
            ),
        ),
        "#does-adversarial-imitation-beat-sft",
    ),
    Row(
        "the trained discriminator with SFT's loss on its demonstrations (`disc_likelihood_weight=1`)",
        "the defaults (one thread)",
        "distil, 2048",
        (
            ("GAIL", Paired("imitation_sweep_distil_2048_likelihood_weight_1:gail", f"{ONE_THREAD}:gail")),
            ("AIRL", Paired("imitation_sweep_distil_2048_likelihood_weight_1:airl", f"{AIRL_ONE_THREAD}:airl")),
            (
                "GAIL's discriminator as a generator",
                Paired(
                    "imitation_sweep_distil_2048_likelihood_weight_1:gail",
                    f"{ONE_THREAD}:gail",
                    "discriminator_reverse_kl",
                ),
            ),
        ),
        "#does-adversarial-imitation-beat-sft",
        note="The discriminator memorises its training rows",
    ),
    Row(
        "the trained discriminator at a tenth of the learning rate (`disc_learning_rate=1e-5`)",
        "the defaults (one thread)",
        "distil, 2048",
        (("", Paired("imitation_sweep_distil_2048_large_sft_discriminator_disc_lr_1e-5:gail", f"{ONE_THREAD}:gail")),),
        "#does-adversarial-imitation-beat-sft",
    ),
    Row(
        "SFT for twice the steps, at its best temperature",
        "SFT at its best temperature (two threads)",
        "distil, 2048",
        (
            (
                "",
                Paired(
                    "imitation_sweep_distil_2048_sft3000:sft_best_temperature",
                    f"{LARGE}:sft_best_temperature",
                ),
            ),
        ),
        "#does-adversarial-imitation-beat-sft",
    ),
    Row(
        "TRL's `DistillationTrainer` (needs the teacher's logits)",
        "GRPO with the exact sequence reward; SFT at its best temperature",
        "distil, 2048",
        (
            (
                "against the exact reward",
                Paired("imitation_sweep_distil_2048_recipe:distillation", "imitation_sweep_distil_2048_recipe:oracle"),
            ),
            (
                "forward",
                Paired(
                    "imitation_sweep_distil_2048_recipe:distillation",
                    "imitation_sweep_distil_2048_recipe:sft_best_temperature",
                    "forward_kl",
                ),
            ),
        ),
        "#with-the-teachers-logits",
    ),
    Row(
        "TRL's experimental `SDFTTrainer` (the model its own teacher, the demonstration in its context)",
        "SFT",
        "distil, 2048",
        (
            (
                "TRL's teacher prompt",
                Paired("imitation_sweep_distil_2048_sdft:sdft", "imitation_sweep_distil_2048_sdft:sft"),
            ),
            (
                "the demonstration first",
                Paired(
                    "imitation_sweep_distil_2048_sdft_demonstration_first:sdft",
                    "imitation_sweep_distil_2048_sdft_demonstration_first:sft",
                ),
            ),
        ),
        "#with-the-teachers-logits",
        note="It collapses to empty or one-word responses",
    ),
    Row(
        "`GAILTrainer` / `AIRLTrainer`, two checkpoints of one SFT run",
        "SFT for 4500 steps (about the same time)",
        "rules, 2048",
        (
            (
                "GAIL",
                Paired(
                    "imitation_sweep_rules_mid_policy_end_discriminator+imitation_sweep_rules_mid_end_seeds34:gail",
                    "imitation_sweep_rules_sft4500+imitation_sweep_rules_sft4500_seeds34:sft",
                ),
            ),
            (
                "AIRL",
                Paired(
                    "imitation_sweep_rules_mid_policy_end_discriminator+imitation_sweep_rules_mid_end_seeds34:airl",
                    "imitation_sweep_rules_sft4500+imitation_sweep_rules_sft4500_seeds34:sft",
                ),
            ),
        ),
        "#does-adversarial-imitation-beat-sft",
    ),
    Row(
        "the same recipe",
        "SFT at its best temperature (1.0, 0.8 or 0.6)",
        "distil, 2048",
        (
            (
                "GAIL",
                Paired(
                    "imitation_sweep_distil_2048_recipe:gail",
                    "imitation_sweep_distil_2048_recipe:sft_best_temperature",
                ),
            ),
        ),
        "#does-adversarial-imitation-beat-sft",
    ),
    Row(
        "`GAILTrainer`, a larger SFT model as `discriminator`, trained or frozen",
        "SFT at its best temperature (1.0, 0.8 or 0.6)",
        "memorise, 32",
        (
            (
                "trained",
                Paired(
                    "imitation_sweep_memorise_32_large_sft_discriminator:gail",
                    "imitation_sweep_memorise_32_large_sft_discriminator:sft_best_temperature",
                ),
            ),
            (
                "frozen",
                Paired(
                    "imitation_sweep_memorise_32_large_sft_discriminator_frozen:gail",
                    "imitation_sweep_memorise_32_large_sft_discriminator_frozen:sft_best_temperature",
                ),
            ),
        ),
        "#does-adversarial-imitation-beat-sft",
    ),
    Row(
        "`GAILTrainer`, the defaults (a copy of the policy as discriminator)",
        "SFT",
        "memorise, 32",
        (
            (
                "",
                Paired(
                    "imitation_sweep_memorise_32_one_thread_default_copy:gail",
                    "imitation_sweep_memorise_32_one_thread_default_copy:sft",
                ),
            ),
        ),
        "#does-adversarial-imitation-beat-sft",
    ),
    Row(
        "Best-of-16 reranked by the larger SFT model's likelihood, or by AIRL's reward model",
        "SFT sampled at temperature 0.6; the student reranking its own samples",
        "distil, 2048 (one thread)",
        (
            ("larger model", Paired(f"{BEST_OF_N}:best_of_16_large", f"{BEST_OF_N}:sample_t0.6", best_of_n=True)),
            ("AIRL's", Paired(f"{BEST_OF_N}:best_of_16_airl", f"{BEST_OF_N}:sample_t0.6", best_of_n=True)),
            (
                "AIRL's minus the larger model's",
                Paired(f"{BEST_OF_N}:best_of_16_airl", f"{BEST_OF_N}:best_of_16_large", best_of_n=True),
            ),
            (
                "larger model minus the student's own",
                Paired(f"{BEST_OF_N}:best_of_16_large", f"{BEST_OF_N}:best_of_16_self", best_of_n=True),
            ),
        ),
        "#does-a-learned-reward-help-as-a-reranker",
    ),
    Row(
        "Best-of-16 reranked by the two-checkpoint ratio",
        "SFT sampled at temperature 0.6",
        "rules, 2048",
        (
            (
                "",
                Paired("best_of_n_rules_2048:best_of_16_ratio", "best_of_n_rules_2048:sample_t0.6", best_of_n=True),
            ),
        ),
        "#does-a-learned-reward-help-as-a-reranker",
    ),
    Row(
        "`WeightedSFTTrainer` (occupancy weights)",
        "`SFTTrainer`",
        "rules, 512 / 2048 / 8192",
        tuple(
            (
                f"{count}",
                Paired("imitation_sweep_rules:weighted_sft", "imitation_sweep_rules:sft", count=str(count)),
            )
            for count in (512, 2048, 8192)
        ),
        "#does-weightedsft-beat-sft",
    ),
    Row(
        "`VarianceRewardTrainer`",
        "`RewardTrainer`",
        "noisy synthetic preferences, 2000 pairs",
        (
            (
                "accuracy against the true order",
                Paired(
                    "variance_reward_2000:variance_reward",
                    "variance_reward_2000:reward",
                    "accuracy_true_order",
                    higher_is_better=True,
                ),
            ),
        ),
        "#variancereward-against-reward-on-noisy-preferences",
    ),
)


def summary_table(rows: tuple[Row, ...], readme: bool = False) -> str:
    """A Markdown table of `rows` (`readme`: with links into docs/benchmarks.md)."""
    header = "| trainer | against | where | seeds | result (method minus reference) | details |"
    if not readme:
        header = header.replace("| trainer |", "| trainer and setting |")
    lines = [header, "|---|---|---|---|---|---|"]
    for row in rows:
        cells = f"| {row.trainer} | {row.against} | {row.regime} | {row.seeds()} | {row.result()} |"
        if readme:
            lines.append(f"{cells} [benchmarks](docs/benchmarks.md{row.details}) |")
        else:
            lines.append(f"{cells} [{row.details.lstrip('#').replace('-', ' ')}]({row.details}) |")
    return "\n".join(lines)


def counterfactual_costs(stem: str = COUNTERFACTUALS) -> str:
    """Each method's training time without evaluation, mean and spread over seeds, and its ratio to SFT's."""
    record = json.loads((RESULTS / f"{stem}.json").read_text())
    summary = record["summary"]
    lines = [
        "| method | training seconds (mean +- sd over seeds) | ratio to the student's SFT | evaluation seconds |",
        "|---|---|---|---|",
    ]
    sft = summary["sft"]["train_seconds"][0]
    for name in _in_order(summary):
        row = summary[name]
        if "train_seconds" not in row or "temperature" in name:
            continue
        mean, spread = row["train_seconds"]
        evaluation = row["evaluation_seconds"][0]
        lines.append(f"| {name} | {mean:.0f} +- {spread:.0f} | {mean / sft:.2f} | {evaluation:.0f} |")
    return "\n".join(lines)


def counterfactual_rows(stem: str = COUNTERFACTUALS) -> str:
    """Every row of the counterfactuals: reverse and forward KL, mean +- sd over seeds, and the best temperatures."""
    record = json.loads((RESULTS / f"{stem}.json").read_text())
    lines = [f"Seeds {', '.join(map(str, record['seeds']))}; one thread per run.", ""]
    lines += ["| row | reverse KL | forward KL | temperature chosen |", "|---|---|---|---|"]
    for name in _in_order(record["summary"]):
        row = record["summary"][name]
        cells = [f"{row[metric][0]:.3f} +- {row[metric][1]:.3f}" for metric in ("reverse_kl", "forward_kl")]
        if "temperature" in row:
            per_seed = [rows[name]["temperature"] for rows in record["runs"].values() if name in rows]
            cells.append(", ".join(f"{t:.1f}" for t in per_seed))
        else:
            cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def counterfactual_pairs(stem: str = COUNTERFACTUALS) -> str:
    """
    The pairs that decide a recommendation: each seed's difference with its evaluation's standard error (the two
    evaluations' combined; none where the divergences are exact), then the mean over seeds with its 95% t-interval
    and the exact sign test's p.
    """
    record = json.loads((RESULTS / f"{stem}.json").read_text())
    lines = ["| method minus reference | metric | per seed (+- evaluation's standard error) | mean [95% interval] | "]
    lines[0] += "better in | sign test p |"
    lines.append("|---|---|---|---|---|---|")
    for name, by_metric in record["pairs"].items():
        for metric, result in by_metric.items():
            errors = result.get("evaluation_se") or [None] * len(result["differences"])
            per_seed = ", ".join(
                f"{difference:+.3f}" + (f" (+-{error:.3f})" if error is not None else "")
                for difference, error in zip(result["differences"], errors, strict=True)
            )
            low, high = result["interval"]
            cells = [
                f"`{name}`",
                {"invalid": "invalid mass"}.get(metric, metric.replace("_kl", " KL")),
                per_seed,
                f"{result['mean']:+.3f} [{low:+.3f}, {high:+.3f}]",
                f"{result['better_in']} of {len(result['seeds'])}",
                f"{result['sign_test_p']:.3f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The step-time and memory readings with a JSON: (results stem, trainer, baseline, setting)
COST_READINGS = (
    ("weighted_sft_10m_cpu", "`WeightedSFTTrainer`", "`SFTTrainer`", "10.5M-parameter Llama"),
    (
        "gail_benchmark_10m_copy",
        "`GAILTrainer`, a copy of the policy as discriminator, trained",
        "`GRPOTrainer` with that copy frozen as reward",
        "10.5M-parameter policy",
    ),
    (
        "gail_benchmark_10m_40m",
        "`GAILTrainer`, a discriminator 4 times the policy, trained",
        "`GRPOTrainer` with that model frozen as reward",
        "10.5M-parameter policy, 36M discriminator",
    ),
    (
        "gail_benchmark_10m_40m_frozen",
        "`GAILTrainer`, the same discriminator frozen",
        "`GRPOTrainer` with that model frozen as reward",
        "10.5M-parameter policy, 36M discriminator",
    ),
)


def costs() -> str:
    """Step time and peak memory against the TRL baseline in the same run, with the design's ratio where computed."""
    lines = [
        "| trainer | against | setting | date, machine | threads | time ratio | design ratio | memory ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stem, trainer, baseline, setting in COST_READINGS:
        path = RESULTS / f"{stem}.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        design = f"{record['design_ratio']:.2f}" if "design_ratio" in record else "-"
        threads = record["args"]["threads"] if "args" in record else record.get("threads", "-")
        where = f"{record.get('date', '-')}, {record.get('device', 'CPU')}"
        cells = [trainer, baseline, setting, where, str(threads or "torch's default")]
        cells += [f"{record['time_ratio']:.2f}", design, f"{record['memory_ratio']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def benchmark_settings() -> str:
    """The settings every adversarial method of the benchmark trains with, beside what `GAILConfig()` ships."""
    from trl_irl import GAILConfig
    from trl_irl.benchmark.settings import ComparisonSettings

    shipped = GAILConfig(output_dir="unused", bf16=False, report_to="none")
    regimes = {regime: ComparisonSettings.for_regime(regime).adversarial_trainer_settings() for regime in REGIMES}
    lines = ["| setting | `GAILConfig()` | " + " | ".join(f"{regime} benchmark" for regime in regimes) + " |"]
    lines.append("|---|---|" + "---|" * len(regimes))
    for name in regimes["distil"]:
        default = getattr(shipped, name)
        cells = [_setting(settings[name]) for settings in regimes.values()]
        differs = any(settings[name] not in (default, None) for settings in regimes.values())
        name = f"**`{name}`**" if differs else f"`{name}`"
        lines.append(f"| {name} | {_setting(default)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _setting(value) -> str:
    """A setting as the docs write it (`None`: the trainer's default for the discriminator type)."""
    if value is None:
        return "trainer's default"
    return f"{value:g}" if isinstance(value, float) else str(getattr(value, "value", value))


# `trl_irl.estimate_memory` against measured peaks (benchmarks/memory_estimate_check.py), and at real sizes
MEMORY_CHECKS = ("memory_estimate_10m_cpu", "memory_estimate_40m_cpu", "memory_estimate_40m_cpu_checkpointing")
# The shapes of Qwen2.5-0.5B, -1.5B and -7B's configs (typed here: the estimate needs no download)
REAL_SIZES = {
    "0.5B": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True},
    "1.5B": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
             "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True},
    "7B": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
           "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False},
}  # fmt: skip
DISCRIMINATOR_CHOICE_NAMES = {
    "trained": "trained in full (the default copy)",
    "lora": "a LoRA adapter on its own copy",
    "frozen": "frozen (another checkpoint)",
    "shared_base": "an adapter on the LoRA policy's base",
}


def memory_estimate_check() -> str:
    """The estimate against the measured peak of the same GAIL run, per discriminator choice."""
    lines = [
        "| preset | checkpointing | discriminator | estimate (GiB) | measured (GiB) | ratio | date, machine |",
        "|---|---|---|---|---|---|---|",
    ]
    for stem in MEMORY_CHECKS:
        path = RESULTS / f"{stem}.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        checkpointing = "yes" if record["settings"]["gradient_checkpointing"] else "no"
        for run in record["runs"]:
            cells = [record["preset"], checkpointing, DISCRIMINATOR_CHOICE_NAMES[run["choice"]]]
            cells += [f"{run['estimate']['peak_bytes'] / 2**30:.2f}", f"{run['measured_bytes'] / 2**30:.2f}"]
            cells += [f"{run['ratio']:.2f}", f"{record['date']}, {record['device']}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_real_sizes() -> str:
    """`estimate_memory` for Qwen2.5-shaped policies in bf16, per discriminator choice, GRPO's other defaults."""
    from transformers import Qwen2Config

    from trl_irl import GAILConfig, estimate_memory
    from trl_irl.memory import discriminator_choice

    args = GAILConfig(
        output_dir="unused",
        report_to="none",
        bf16=False,  # this machine may have no GPU; bf16 weights give bf16 activations all the same
        use_cpu=True,
        model_init_kwargs={"dtype": "bfloat16"},
        per_device_train_batch_size=8,
        max_completion_length=256,
    )
    choices = list(DISCRIMINATOR_CHOICE_NAMES)
    lines = ["| policy | " + " | ".join(DISCRIMINATOR_CHOICE_NAMES[c] for c in choices) + " |"]
    lines.append("|---|" + "---|" * len(choices))
    for size, shape in REAL_SIZES.items():
        config = Qwen2Config(**shape, dtype="bfloat16")
        for micro_batch in (None, 2):
            args.disc_micro_batch_size = micro_batch
            cells = []
            for choice in choices:
                changed, peft_config, disc_peft_config = discriminator_choice(choice, args)
                estimate = estimate_memory(config, changed, None, peft_config, disc_peft_config, max_prompt_length=512)
                cells.append(f"{estimate.peak_bytes / 2**30:.0f} GiB")
            setting = f", `disc_micro_batch_size={micro_batch}`" if micro_batch else ""
            lines.append(f"| {size}{setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# A verifiable reward (the rules the distil regime's teacher learned) alone, with GRPO's KL, and beside GAIL's
# discriminator frozen and trained, on the counterfactuals' seeds
CHECKER_ROWS = (
    Row(
        "GRPO on the checker alone",
        "SFT at its best temperature",
        "distil, 2048",
        (
            ("", _versus_best_sft("checker")),
            ("forward", Paired(f"{C}:checker", f"{C}:sft_best_temperature", "forward_kl")),
            (
                "checker score",
                Paired(f"{C}:checker", f"{C}:sft_best_temperature", "checker_score", higher_is_better=True),
            ),
        ),
        "#a-verifiable-reward-beside-the-discriminator",
    ),
    Row(
        "the checker with GRPO's KL to the SFT start (`beta=0.05`)",
        "the checker alone",
        "distil, 2048",
        (
            ("", Paired(f"{C}:checker_kl", f"{C}:checker")),
            ("forward", Paired(f"{C}:checker_kl", f"{C}:checker", "forward_kl")),
        ),
        "#a-verifiable-reward-beside-the-discriminator",
    ),
    Row(
        "the checker beside GAIL's discriminator (the larger SFT model), frozen and trained (`reward_funcs`)",
        "the checker alone; each other",
        "distil, 2048",
        (
            ("frozen", Paired(f"{C}:checker_gail_frozen", f"{C}:checker")),
            ("frozen, forward", Paired(f"{C}:checker_gail_frozen", f"{C}:checker", "forward_kl")),
            (
                "frozen, checker score",
                Paired(f"{C}:checker_gail_frozen", f"{C}:checker", "checker_score", higher_is_better=True),
            ),
            ("trained", Paired(f"{C}:checker_gail", f"{C}:checker")),
            ("trained, forward", Paired(f"{C}:checker_gail", f"{C}:checker", "forward_kl")),
            ("trained minus frozen", Paired(f"{C}:checker_gail", f"{C}:checker_gail_frozen")),
            ("trained minus frozen, forward", Paired(f"{C}:checker_gail", f"{C}:checker_gail_frozen", "forward_kl")),
            (
                "trained minus frozen, checker score",
                Paired(f"{C}:checker_gail", f"{C}:checker_gail_frozen", "checker_score", higher_is_better=True),
            ),
        ),
        "#a-verifiable-reward-beside-the-discriminator",
    ),
)

# The README's table: every use of the larger model in the distil regime, then the memorise regime's adversarial rows
README_ROWS = (*COUNTERFACTUAL_ROWS, MEMORISE_ROWS[0], MEMORISE_ROWS[4], *LONG_ROWS, *PRETRAINED_ROWS, RULES_ROWS[0])

# How far `trl-irl evaluate`'s proxies rank the methods as the exact divergences do (benchmarks/proxy_validation.py)
PROXY_VALIDATIONS = (
    ("pretrained base, 128", "proxy_validation_pretrained"),
    ("memorise, 32", "proxy_validation_memorise"),
    ("distil, 2048", "proxy_validation_distil"),
    ("rules, 2048", "proxy_validation_rules"),
)
PROXY_NAMES = {
    "heldout_nll": "held-out NLL",
    "judge_reverse_kl": "the larger SFT model as judge (reverse KL to it)",
    "checker_miss": "a rule checker's misses",
    "two_sample_accuracy": "two-sample test accuracy",
    "length_gap": "length gap to the demonstrations",
}
EXACT_KL = ("reverse_kl", "forward_kl")


def proxy_validation() -> str:
    """Per regime and proxy: mean Spearman's correlation over seeds with the exact reverse and forward KL."""
    lines = ["| proxy | where | seeds | with reverse KL | with forward KL |", "|---|---|---|---|---|"]
    for regime, stem in PROXY_VALIDATIONS:
        path = RESULTS / f"{stem}.json"
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())["summary"]
        for proxy, name in PROXY_NAMES.items():
            if proxy in summary:
                by_metric = summary[proxy]
                cells = [f"{by_metric[metric]['mean']:+.2f}" if metric in by_metric else "-" for metric in EXACT_KL]
                seeds = max(value["seeds"] for value in by_metric.values())
                lines.append(f"| {name} | {regime} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLES = {
    "readme_results": lambda: summary_table(README_ROWS, readme=True),
    "counterfactuals": lambda: summary_table(COUNTERFACTUAL_ROWS),
    "counterfactual_rows": counterfactual_rows,
    "counterfactual_pairs": counterfactual_pairs,
    "counterfactual_costs": counterfactual_costs,
    "earlier_readings": lambda: summary_table(EARLIER_ROWS),
    "memorise_counterfactuals": lambda: summary_table(MEMORISE_ROWS),
    "memorise_counterfactual_rows": lambda: counterfactual_rows(MEMORISE_COUNTERFACTUALS),
    "memorise_counterfactual_pairs": lambda: counterfactual_pairs(MEMORISE_COUNTERFACTUALS),
    "memorise_long": lambda: summary_table(LONG_ROWS),
    "verifier": lambda: summary_table(CHECKER_ROWS),
    "memorise_long_rows": lambda: counterfactual_rows(MEMORISE_LONG),
    "pretrained_counterfactuals": lambda: summary_table(PRETRAINED_ROWS),
    "pretrained_counterfactual_rows": lambda: counterfactual_rows(PRETRAINED_COUNTERFACTUALS),
    "pretrained_counterfactual_pairs": lambda: counterfactual_pairs(PRETRAINED_COUNTERFACTUALS),
    "rules_counterfactuals": lambda: summary_table(RULES_ROWS),
    "rules_counterfactual_rows": lambda: counterfactual_rows(RULES_COUNTERFACTUALS),
    "rules_counterfactual_pairs": lambda: counterfactual_pairs(RULES_COUNTERFACTUALS),
    "proxy_validation": proxy_validation,
    "benchmark_settings": benchmark_settings,
    "costs": costs,
    "memory_estimate_check": memory_estimate_check,
    "memory_real_sizes": memory_real_sizes,
}
# A table's body is every line between its two markers (none before it is first rendered)
TABLE_PATTERN = re.compile(r"(<!-- table: (?P<name>[a-z_]+) -->\n)(?P<body>(?:(?!<!-- ).*\n)*?)(<!-- /table -->)")


def render(text: str) -> str:
    """`text` with every table's body rendered anew."""

    def table(match: re.Match) -> str:
        return match.group(1) + TABLES[match.group("name")]() + "\n" + match.group(4)

    return TABLE_PATTERN.sub(table, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Change nothing; exit 1 where a table is out of date.")
    args = parser.parse_args()
    stale = []
    for path in DOCUMENTS:
        text = path.read_text()
        rendered = render(text)
        if rendered != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(rendered)
    if stale:
        print(("Out of date: " if args.check else "Rendered: ") + ", ".join(stale))
    sys.exit(1 if stale and args.check else 0)


if __name__ == "__main__":
    main()
