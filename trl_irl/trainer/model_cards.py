"""
Model cards of the models the adversarial trainers leave beside the policy: GAIL's discriminator and AIRL's reward
model, built with `huggingface_hub`'s `ModelCard` (metadata the Hub indexes: base model, datasets, tags, pipeline),
and the section the policy's own card (TRL's) gets about them; and the citation every trainer's card carries.

Each card's example loads the model from where it is (a Hub id or a directory, with `subfolder=` when it sits inside
the policy's repository) and runs it; the tests execute the examples.
"""

import textwrap
from typing import NamedTuple

from huggingface_hub import ModelCard, ModelCardData


# The paper every trainer of this package implements a part of, cited on each policy's card (TRL's `_paper`)
SFT_AS_IRL_CITATION = textwrap.dedent("""\
    @article{sun2024supervised,
        title        = {{Supervised Fine-Tuning as Inverse Reinforcement Learning}},
        author       = {Hao Sun},
        year         = 2024,
        eprint       = {arXiv:2403.12017},
    }""")


class CardRole(NamedTuple):
    """What a model left beside the policy is, in the words of its own card and of the policy's."""

    name: str  # "The {name} (trl-irl)" in the policy's card
    tag: str
    title: str  # `{trainer}`: the trainer's name
    paper: str
    in_policy_card: str
    # AIRL's `f_theta`, described as the reward it learned rather than as a discriminator's logit
    is_reward: bool


DISCRIMINATOR = CardRole(
    name="discriminator",
    tag="discriminator",
    title="Discriminator trained with trl-irl's {trainer}Trainer",
    paper="GAIL (Ho and Ermon, 2016, arXiv 1606.03476)",
    in_policy_card="the discriminator trained alongside the policy",
    is_reward=False,
)
REWARD_MODEL = CardRole(
    name="reward model",
    tag="reward-model",
    title="Reward model learned by adversarial inverse reinforcement learning (trl-irl's AIRLTrainer)",
    paper="AIRL (Fu, Luo and Levine, 2017, arXiv 1710.11248)",
    in_policy_card="the reward model that AIRL learned (`f_theta`), reusable as a reward for new prompts",
    is_reward=True,
)

# How each kind of discriminator is loaded and what the Hub calls it
# (and which PEFT task type trains its head: a classifier's one-label head is new)
_AUTO_CLASSES = {
    ("likelihood_ratio", "sequence"): ("AutoModelForCausalLM", "text-generation", "CAUSAL_LM"),
    ("likelihood_ratio", "token"): ("AutoModelForCausalLM", "text-generation", "CAUSAL_LM"),
    ("classifier", "sequence"): ("AutoModelForSequenceClassification", "text-classification", "SEQ_CLS"),
    ("classifier", "token"): ("AutoModelForTokenClassification", "token-classification", "TOKEN_CLS"),
}

_SCORING = {
    "AutoModelForCausalLM": (
        'inputs = tokenizer("prompt and response", return_tensors="pt")\n'
        "log_probs = model(**inputs).logits[0, :-1].log_softmax(-1)\n"
        "# log q(token | the tokens before it); sum a response's for log q(response | prompt)\n"
        'token_log_probs = log_probs.gather(-1, inputs["input_ids"][0, 1:, None])[:, 0]'
    ),
    "AutoModelForSequenceClassification": (
        'inputs = tokenizer("prompt and response", return_tensors="pt")\n'
        "logit = model(**inputs).logits[0, 0]  # expert-is-high"
    ),
    "AutoModelForTokenClassification": (
        'inputs = tokenizer("prompt and response", return_tensors="pt")\n'
        "token_logits = model(**inputs).logits[0, :, 0]  # one per token, expert-is-high"
    ),
}


def auto_class_of(disc_type: str, level: str) -> str:
    """The `transformers` auto class that loads a discriminator of this type and level."""
    return _AUTO_CLASSES[disc_type, level][0]


def peft_task_type(disc_type: str, level: str) -> str:
    """The PEFT `task_type` of a discriminator of this type and level: the one that trains a classifier's new head."""
    return _AUTO_CLASSES[disc_type, level][2]


def load_example(auto_class: str, load_from: str, subfolder: str | None, adapter: bool = False) -> str:
    """
    Python that loads the model and its tokenizer from `load_from` (and `subfolder`) and scores a text; a PEFT
    `adapter` on the base model its config names (peft's `AutoPeftModel*` would look for the base in `subfolder` too).
    """
    where = repr(load_from) + (f", subfolder={subfolder!r}" if subfolder else "")
    if adapter:
        # A classifier's base gets the one-label head the adapter's saved head fits
        head = "" if auto_class == "AutoModelForCausalLM" else ", num_labels=1"
        loading = (
            "from peft import PeftConfig, PeftModel\n"
            f"from transformers import {auto_class}, AutoTokenizer\n\n"
            f"adapter = PeftConfig.from_pretrained({where})\n"
            f"base = {auto_class}.from_pretrained(adapter.base_model_name_or_path{head})\n"
            f"model = PeftModel.from_pretrained(base, {where})\n"
        )
    else:
        loading = (
            f"from transformers import {auto_class}, AutoTokenizer\n\nmodel = {auto_class}.from_pretrained({where})\n"
        )
    return f"{loading}tokenizer = AutoTokenizer.from_pretrained({where})\n{_SCORING[auto_class]}"


def _description(role: CardRole, disc_type: str, level: str, divergence: str) -> str:
    per = "per response token" if level == "token" else "per (prompt, response)"
    if role.is_reward:
        if disc_type == "likelihood_ratio":
            what = (
                "a causal language model `q_phi` with `f_theta(x, y) = log q_phi(y | x)`: the sum over the response's "
                "tokens of their log-probabilities"
                + (" (each token's log-probability is its dense reward)" if level == "token" else "")
                + ". At the optimum `q_phi` is the expert's response distribution, so it can also be sampled from, "
                "and it serves TRL's `GRPOTrainer` through `trl_irl.LikelihoodReward`."
            )
        else:
            what = f"a classifier scoring `f_theta` {per}; at the sequence level it serves `GRPOTrainer` as it is."
        return (
            "`f_theta(x, y)`: the reward that AIRL's discriminator learned from demonstrations alone, with no "
            "preference data. During training the discriminator's logit was `f_theta(x, y) - c * log pi(y | x)`; "
            "at the optimum `f_theta` recovers the expert's reward up to a constant (Fu et al., 2017), so it outlives "
            f"the policy. It is {what} The policy was rewarded with the `{divergence}` reward of the logit."
        )
    if disc_type == "likelihood_ratio":
        what = (
            "a causal language model `q_phi` whose logit was the likelihood ratio `log q_phi(y | x) - log pi(y | x)` "
            + ("per response token" if level == "token" else "of the whole response")
            + ", with `pi` the policy. At the optimum `q_phi` is the expert's response distribution."
        )
    else:
        what = (
            f"a classifier with one logit {per}, `logit = log D - log(1 - D)` with `D` the probability that a text is "
            "a demonstration."
        )
    return (
        f"A discriminator trained to tell expert demonstrations from a policy's own responses: {what} Its logit is "
        f"**expert-is-high**. The policy was rewarded with the `{divergence}` reward of this logit."
    )


def learned_model_card(
    *,
    role: CardRole,
    trainer_name: str,
    disc_type: str,
    level: str,
    divergence: str,
    base_model: str | None,
    dataset_name: str | None,
    load_from: str,
    subfolder: str | None = None,
    adapter: bool = False,
) -> ModelCard:
    """
    The card of a discriminator (`role=DISCRIMINATOR`) or of AIRL's reward model (`role=REWARD_MODEL`), with Hub
    metadata and an example that loads it from `load_from` (and `subfolder`), as a PEFT adapter if `adapter`.
    """
    auto_class, pipeline_tag, _ = _AUTO_CLASSES[disc_type, level]
    tags = ["trl-irl", trainer_name.lower(), role.tag]
    card_data = ModelCardData(
        library_name="transformers",
        base_model=base_model,
        datasets=[dataset_name] if dataset_name else None,
        tags=tags,
        pipeline_tag=pipeline_tag,
    )
    title, paper = role.title.format(trainer=trainer_name), role.paper
    with_peft = " and PEFT (a LoRA adapter on the base model)" if adapter else ""
    content = f"""---
{card_data.to_yaml()}
---

# {title}

{_description(role, disc_type, level, divergence)}

Base model: {base_model or "a local checkpoint"}. Level: {level}. Load it with `{auto_class}`{with_peft}:

```python
{load_example(auto_class, load_from, subfolder, adapter)}
```

Trained with [trl-irl](https://github.com/trl-irl/trl-irl), following {paper} and Supervised Fine-Tuning as Inverse
Reinforcement Learning (Sun, 2024, arXiv 2403.12017).
"""
    return ModelCard(content)


def policy_card_section(
    role: CardRole, disc_type: str, level: str, load_from: str, subfolder: str, adapter: bool = False
) -> str:
    """What the policy's card says about the discriminator or reward model saved beside it, and how to load it."""
    auto_class = auto_class_of(disc_type, level)
    return f"""
## The {role.name} (trl-irl)

This repository also holds {role.in_policy_card}, in the `{subfolder}/` folder, with a card of its own. Load it with:

```python
{load_example(auto_class, load_from, subfolder, adapter)}
```
"""
