import textwrap
from functools import partial

from .airl_config import AIRLConfig
from .gail_trainer import GAILTrainer
from .utils import SFT_AS_IRL_CITATION, resolve_config


def reward_model_card(
    base_model: str | None, divergence: str, token_level: bool = False, likelihood_ratio: bool = False
) -> str:
    if likelihood_ratio:
        auto_class = "AutoModelForCausalLM"
        usage = (
            "It is a causal language model `q_phi`, and `f_theta(x, y) = log q_phi(y | x)`: the sum over the "
            "response's tokens of their log-probabilities"
            + (" (each token's log-probability is its dense reward)." if token_level else ".")
            + " At the optimum `q_phi` is the expert's response distribution, so it can also be sampled from."
        )
    elif token_level:
        auto_class = "AutoModelForTokenClassification"
        usage = (
            "It scores every token of a response (a dense reward); sum the scores of a response's tokens for one "
            "reward."
        )
    else:
        auto_class = "AutoModelForSequenceClassification"
        usage = "As a reward model in TRL's GRPO:"
    example = (
        "# f_theta(x, y) = log q_phi(y | x): sum the log-probabilities of the response's tokens"
        if likelihood_ratio
        else "# with TRL's GRPO (sequence level): GRPOTrainer(model=..., reward_funcs=reward_model, ...)"
    )
    return textwrap.dedent(f"""\
        ---
        library_name: transformers
        tags: [trl-irl, airl, reward-model]
        ---

        # Reward model learned by adversarial inverse reinforcement learning (trl-irl's AIRLTrainer)

        `f_theta(x, y)`: the reward that AIRL's discriminator learned from demonstrations alone, with no preference
        data. During training the discriminator's logit was `f_theta(x, y) - beta * log pi(y | x)`; at the optimum
        `f_theta` recovers the expert's reward up to a constant (Fu et al., 2017), so it outlives the policy. The
        policy was rewarded with the `{divergence}` reward of the logit.

        Base model: {base_model or "unknown"}.

        {usage}

        ```python
        from transformers import {auto_class}

        reward_model = {auto_class}.from_pretrained("path/to/reward_model")
        {example}
        ```

        Trained with [trl-irl](https://github.com/trl-irl/trl-irl), following AIRL (Fu, Luo and Levine, 2017,
        arXiv 1710.11248) and Supervised Fine-Tuning as Inverse Reinforcement Learning (Sun, 2024, arXiv 2403.12017).
        """)


class AIRLTrainer(GAILTrainer):
    r"""
    Adversarial inverse reinforcement learning (Fu et al., 2017) on top of [`~trl.GRPOTrainer`]: GAIL with a
    structured discriminator whose reward network outlives training.

    The discriminator is `D = exp(f_theta) / (exp(f_theta) + pi^beta)`, i.e. its logit is
    `l = f_theta(x, y) - beta * log pi(y | x)`, where `f_theta` is a sequence classifier and `log pi(y | x)` the
    policy's log-probability of the response, at the sampling temperature and without gradient. At the optimum
    `l = log rho_exp - log rho_pi`, as for any discriminator, so that `f_theta` recovers the expert's (log-density)
    reward, and the policy's reward is `l` (reverse KL, the default `divergence`).

    `f_theta` is saved as a standalone reward model, `<output_dir>/reward_model/`, loadable with
    `AutoModelForSequenceClassification.from_pretrained` and usable as a `reward_funcs` entry of `GRPOTrainer`.

    Arguments are [`GAILTrainer`]'s; `discriminator` is the initial `f_theta`.
    """

    _tag_names = ["trl", "grpo", "trl-irl", "airl"]
    _name = "AIRL"
    _paper = {
        "title": "Learning Robust Rewards with Adversarial Inverse Reinforcement Learning",
        "id": "1710.11248",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @inproceedings{fu2018learning,
                title        = {{Learning Robust Rewards with Adversarial Inverse Reinforcement Learning}},
                author       = {Justin Fu and Katie Luo and Sergey Levine},
                year         = 2018,
                booktitle    = {International Conference on Learning Representations},
                eprint       = {arXiv:1710.11248},
            }""")
        + "\n\n"
        + SFT_AS_IRL_CITATION,
    }
    discriminator_dir = "reward_model"

    def __init__(self, model, discriminator=None, args: AIRLConfig | None = None, *gail_args, **gail_kwargs):
        args = resolve_config(args, model, AIRLConfig, self._name, generation_batch_size=None)
        super().__init__(model, discriminator, args, *gail_args, **gail_kwargs)

    def save_reward_model(self, output_dir) -> None:
        """Save `f_theta` on its own: a reward model (safetensors, config, tokenizer, model card)."""
        self.save_discriminator(output_dir)

    def push_reward_model_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None) -> str:
        """Push `f_theta`, with its model card, to its own Hub repository. Returns the commit URL."""
        return self.push_discriminator_to_hub(repo_id, private=private, token=token)

    def _discriminator_card(self) -> str:
        token_level = self.args.discriminator_level == "token"
        likelihood_ratio = self.args.discriminator_type == "likelihood_ratio"
        return reward_model_card(self._discriminator_base_model(), self.args.divergence, token_level, likelihood_ratio)

    def _logit_offsets(self):
        return partial(self._minus_beta_log_pi, beta=self.args.log_prob_coef, reduction=self.args.log_prob_reduction)
