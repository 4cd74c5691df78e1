import textwrap

from ..rewards import PolicyLogProbOffsets
from .adversarial_trainer import AdversarialTrainer
from .airl_config import AIRLConfig
from .model_cards import REWARD_MODEL, SFT_AS_IRL_CITATION


class AIRLTrainer(AdversarialTrainer):
    r"""
    Adversarial inverse reinforcement learning (Fu et al., 2017) on top of [`~trl.GRPOTrainer`]: GAIL with a
    structured discriminator whose reward network outlives training.

    The discriminator is `D = exp(f_theta) / (exp(f_theta) + pi^c)`, i.e. its logit is
    `l = f_theta(x, y) - c * log pi(y | x)` (`c` is `log_prob_coef`), where `f_theta` is the discriminator's output
    and `log pi(y | x)` the policy's log-probability of the response, at the sampling temperature and without
    gradient. At the optimum
    `l = log rho_exp - log rho_pi`, as for any discriminator, so that `f_theta` recovers the expert's (log-density)
    reward, and the policy's reward is `l` (reverse KL, the default `divergence`).

    `f_theta` is saved as a standalone reward model, `<output_dir>/reward_model/`, with a card that says how to load
    it: with the default likelihood-ratio discriminator a causal LM `q_phi` (`AutoModelForCausalLM`), which
    `LikelihoodReward.from_pretrained` turns into a `reward_funcs` entry of `GRPOTrainer`; with
    `disc_type="classifier"` a one-label classifier, itself a `reward_funcs` entry.

    With the default likelihood-ratio discriminator (`f_theta = log q_phi`, `c = 1`) the logit is GAIL's
    `log q_phi - log pi`: AIRL is then [`GAILTrainer`] with `divergence="reverse_kl"` whose discriminator is saved as
    a reward model. What AIRL adds is the classifier form, `f_theta - c log pi` with any `c`, and the reward model.

    Arguments are [`GAILTrainer`]'s, with an [`AIRLConfig`]; `discriminator` is the initial `f_theta`.
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
    config_class = AIRLConfig
    _card_role = REWARD_MODEL

    def save_reward_model(self, output_dir, load_from: str | None = None, subfolder: str | None = None) -> None:
        """Save `f_theta` on its own: a reward model (safetensors, config, tokenizer, model card)."""
        self.save_discriminator(output_dir, load_from=load_from, subfolder=subfolder)

    def push_reward_model_to_hub(
        self, repo_id: str, private: bool | None = None, token: str | None = None
    ) -> str | None:
        """
        Push `f_theta`, with its model card, to its own Hub repository. Returns the commit URL (`None` on processes
        other than the main one; call it on every process, as `push_discriminator_to_hub`).
        """
        return self.push_discriminator_to_hub(repo_id, private=private, token=token)

    def _logit_offsets(self) -> PolicyLogProbOffsets:
        """`-c log pi`, `c` being `log_prob_coef`, summed or averaged over the response (`log_prob_reduction`)."""
        return self._log_prob_offsets(coef=self.args.log_prob_coef, reduction=self.args.log_prob_reduction)
