"""The likelihood-ratio discriminator (`trl_irl/discriminator/likelihood_ratio.py`) and its likelihood term; inside the
trainers, its tests are those of GAIL, AIRL and the discriminator's start."""

import pytest
import torch
from helpers import (
    COUNTING_PROMPT,
    adversarial_config,
    likelihood_ratio_config,
    token_log_likelihoods,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_irl import GAILConfig, GAILTrainer
from trl_irl.discriminator import LikelihoodRatioDiscriminator


class TestLikelihoodRatioDiscriminator:
    def test_logits_are_log_q_summed_or_per_token(self, tiny_model_path):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        prompt_ids = tokenizer(COUNTING_PROMPT)["input_ids"]
        responses = [tokenizer(" 1 2 3")["input_ids"] + [tokenizer.eos_token_id], tokenizer(" 7")["input_ids"]]
        samples = [(tuple(prompt_ids), tuple(response)) for response in responses]
        expected = [
            token_log_likelihoods(model, tokenizer, COUNTING_PROMPT, response, temperature=0.7)
            for response in responses
        ]

        sequence = LikelihoodRatioDiscriminator(model, tokenizer, temperature=0.7)
        torch.testing.assert_close(sequence.logits(samples), torch.stack([e.sum() for e in expected]))
        token = LikelihoodRatioDiscriminator(model, tokenizer, token_level=True, temperature=0.7)
        torch.testing.assert_close(token.logits(samples), torch.cat(expected))

    def test_refuses_a_model_without_language_modelling_head(self, tiny_model_path):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
        with pytest.raises(ValueError, match="AutoModelForCausalLM"):
            LikelihoodRatioDiscriminator(model, AutoTokenizer.from_pretrained(tiny_model_path))

    def test_a_head_tied_to_the_embeddings_resumes(self, tmp_path, tiny_model_path):
        # Most small checkpoints tie the head to the input embeddings, and `save_pretrained` writes the tied weight
        # once: resuming loaded strictly and failed on the head it did not find
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(tiny_model_path, tie_word_embeddings=True)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        prompt_ids = tuple(tokenizer(COUNTING_PROMPT)["input_ids"])
        expert, policy = [(prompt_ids, (5, 6, 7))], [(prompt_ids, (9, 9))]

        def build():
            torch.manual_seed(0)
            return LikelihoodRatioDiscriminator(
                AutoModelForCausalLM.from_config(config), tokenizer, learning_rate=1e-2
            )

        trained = build()
        trained.update(expert, policy)
        trained.save_pretrained(tmp_path)
        trained.save_state(tmp_path)
        resumed = build()
        resumed.load(tmp_path)
        assert resumed.model.lm_head.weight is resumed.model.model.embed_tokens.weight
        assert resumed.update(expert, policy).stats == pytest.approx(trained.update(expert, policy).stats)
        torch.testing.assert_close(resumed.model.lm_head.weight, trained.model.lm_head.weight)

    def test_weights_of_another_architecture_are_refused_by_name(self, tmp_path, tiny_model_path):
        from transformers import AutoModelForSequenceClassification

        from trl_irl import Discriminator

        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        classifier = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
        saved = Discriminator(classifier, tokenizer)
        saved.save_pretrained(tmp_path)
        saved.save_state(tmp_path)
        discriminator = LikelihoodRatioDiscriminator(AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer)
        with pytest.raises(ValueError, match="model.safetensors does not fit.*missing.*lm_head.*unexpected.*score"):
            discriminator.load(tmp_path)

    def test_a_response_must_leave_room_for_a_prompt_token(self, tiny_model_path):
        discriminator = LikelihoodRatioDiscriminator(
            AutoModelForCausalLM.from_pretrained(tiny_model_path),
            AutoTokenizer.from_pretrained(tiny_model_path),
            max_length=4,
        )
        assert discriminator.logits([((1, 2, 3), (4, 5, 6))]).shape == (1,)
        with pytest.raises(ValueError, match="max_length"):
            discriminator.logits([((1, 2, 3), (4, 5, 6, 7))])


class TestLikelihoodTerm:
    """`likelihood_weight` (`disc_likelihood_weight`): SFT's loss on the update's demonstrations, beside the BCE."""

    @staticmethod
    def _samples(tokenizer):
        prompt_ids = tuple(tokenizer(COUNTING_PROMPT)["input_ids"])
        demonstrations = [" 1 2 3", " 2 3 4"]
        policy = [" 7", " 1 1"]
        encode = [tuple(tokenizer(text)["input_ids"]) + (tokenizer.eos_token_id,) for text in demonstrations]
        return [(prompt_ids, ids) for ids in encode], [(prompt_ids, tuple(tokenizer(t)["input_ids"])) for t in policy]

    @pytest.mark.parametrize(("token_level", "micro_batch_size"), [(False, None), (True, None), (False, 1)])
    def test_an_update_steps_on_the_cross_entropy_plus_the_weighted_negative_log_likelihood(
        self, tiny_model_path, token_level, micro_batch_size
    ):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        expert, policy = self._samples(tokenizer)
        # The logit offsets `-log pi`: any constants, here made up, so that the cross-entropy's terms are not 0
        expert_offsets = torch.tensor([0.4, -0.3]) if not token_level else None
        policy_offsets = torch.tensor([1.1, 0.2]) if not token_level else None
        weight, learning_rate = 0.7, 0.5

        # By hand: the balanced cross-entropy of l = log q + offset, plus `weight` x SFT's loss on the demonstrations
        reference = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        expert_log_q = [
            token_log_likelihoods(reference, tokenizer, COUNTING_PROMPT, list(ids), grad=True) for _, ids in expert
        ]
        policy_log_q = [
            token_log_likelihoods(reference, tokenizer, COUNTING_PROMPT, list(ids), grad=True) for _, ids in policy
        ]
        if token_level:
            logits_expert, logits_policy = torch.cat(expert_log_q), torch.cat(policy_log_q)
        else:
            logits_expert = torch.stack([q.sum() for q in expert_log_q]) + expert_offsets
            logits_policy = torch.stack([q.sum() for q in policy_log_q]) + policy_offsets
        nll = -torch.cat(expert_log_q).mean()
        loss = 0.5 * (
            torch.nn.functional.softplus(-logits_expert).mean() + torch.nn.functional.softplus(logits_policy).mean()
        )
        reference.zero_grad()
        (loss + weight * nll).backward()
        expected = [param - learning_rate * param.grad for param in reference.parameters()]

        discriminator = LikelihoodRatioDiscriminator(
            AutoModelForCausalLM.from_pretrained(tiny_model_path),
            tokenizer,
            token_level=token_level,
            micro_batch_size=micro_batch_size,
            likelihood_weight=weight,
        )
        discriminator.optimizer = torch.optim.SGD(discriminator.model.parameters(), lr=learning_rate)
        update = discriminator.update(expert, policy, expert_offsets, policy_offsets)

        assert update.stats["nll_expert"] == pytest.approx(nll.item(), rel=1e-5)
        assert update.stats["loss"] == pytest.approx((loss + weight * nll).item(), rel=1e-5)
        for stepped, hand in zip(discriminator.model.parameters(), expected, strict=True):
            torch.testing.assert_close(stepped, hand, rtol=1e-4, atol=1e-6)

    def test_without_the_weight_the_step_is_the_cross_entropy_s_and_the_likelihood_is_still_logged(
        self, tiny_model_path
    ):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        expert, policy = self._samples(tokenizer)
        steps = {}
        for weight in (0.0, 1.0):
            discriminator = LikelihoodRatioDiscriminator(
                AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer, likelihood_weight=weight
            )
            discriminator.optimizer = torch.optim.SGD(discriminator.model.parameters(), lr=0.5)
            steps[weight] = (discriminator.update(expert, policy).stats, list(discriminator.model.parameters()))
        (plain, plain_params), (weighted, weighted_params) = steps[0.0], steps[1.0]
        assert plain["nll_expert"] == pytest.approx(weighted["nll_expert"])
        assert weighted["loss"] == pytest.approx(plain["loss"] + plain["nll_expert"], rel=1e-5)
        assert not all(torch.equal(a, b) for a, b in zip(plain_params, weighted_params, strict=True))

    def test_it_keeps_q_phi_on_the_demonstrations_the_cross_entropy_alone_pushes_it_off(self, tiny_model_path):
        # Policy samples that are the demonstrations' own words: the cross-entropy lowers q_phi on them, and with it
        # on the demonstrations; the likelihood term holds q_phi's likelihood of the demonstrations
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
        expert, _ = self._samples(tokenizer)
        prompt_ids = expert[0][0]
        policy = [(prompt_ids, tuple(tokenizer(text)["input_ids"])) for text in (" 1 2", " 2 3", " 1 2 3 4")]
        nll = {}
        for weight in (0.0, 1.0):
            discriminator = LikelihoodRatioDiscriminator(
                AutoModelForCausalLM.from_pretrained(tiny_model_path),
                tokenizer,
                learning_rate=3e-3,
                likelihood_weight=weight,
            )
            start = discriminator.negative_log_likelihood(expert)
            for _ in range(10):
                discriminator.update(expert, policy)
            nll[weight] = discriminator.negative_log_likelihood(expert) - start
        assert nll[1.0] < nll[0.0]
        assert nll[1.0] < 0  # the term does more than slow the drift: q_phi fits the demonstrations better

    @pytest.mark.parametrize("weight", [-0.5, float("nan")])
    def test_a_weight_below_zero_or_nan_is_refused_by_name(self, tmp_path, tiny_model_path, weight):
        with pytest.raises(ValueError, match="likelihood_weight"):
            LikelihoodRatioDiscriminator(
                AutoModelForCausalLM.from_pretrained(tiny_model_path),
                AutoTokenizer.from_pretrained(tiny_model_path),
                likelihood_weight=weight,
            )
        with pytest.raises(ValueError, match="disc_likelihood_weight"):
            likelihood_ratio_config(GAILConfig, tmp_path, disc_likelihood_weight=weight)

    def test_a_classifier_with_the_weight_is_refused_by_name(self, tmp_path):
        with pytest.raises(ValueError, match="disc_likelihood_weight"):
            adversarial_config(GAILConfig, tmp_path, disc_type="classifier", disc_likelihood_weight=1.0)

    def test_gail_passes_the_weight_and_logs_the_demonstrations_likelihood(
        self, tmp_path, tiny_model_path, prompt_completion_dataset
    ):
        trainer = GAILTrainer(
            model=tiny_model_path,
            args=likelihood_ratio_config(GAILConfig, tmp_path, disc_likelihood_weight=0.5),
            train_dataset=prompt_completion_dataset,
        )
        assert trainer.discriminator.likelihood_weight == 0.5
        trainer.train()
        logged = [entry["disc/nll_expert"] for entry in trainer.state.log_history if "disc/nll_expert" in entry]
        assert logged and all(value > 0 for value in logged)
