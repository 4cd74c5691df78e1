"""
trl_irl/trainer/discriminator_factory.py: GAIL's and AIRL's discriminator from their arguments, through the trainer:
its source (a copy of the policy by default, what a model built in memory lacks), its kind and head, where it is
loaded from, and what is refused before any work, named by argument or config field.
"""

import pytest
import torch
from helpers import adversarial_config, built_in_memory
from peft import LoraConfig
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_irl import GAILConfig, GAILTrainer


def _config(tmp_path, **overrides) -> GAILConfig:
    return adversarial_config(GAILConfig, tmp_path, **overrides)


def _built_in_memory(tiny_model_path):
    from transformers import AutoModelForCausalLM

    return built_in_memory(AutoModelForCausalLM, tiny_model_path)


def _parameters_equal(first, second) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))


def test_the_default_discriminator_is_loaded_at_the_policy_s_revision(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch
):
    import trl_irl.trainer.discriminator_factory as discriminator_factory

    # Replaced in the discriminator factory's module only: GRPO's own loading of the policy is not recorded
    loaded = []
    for name in ("AutoModelForCausalLM", "AutoTokenizer"):
        auto_class = getattr(discriminator_factory, name)

        class Recording:
            @staticmethod
            def from_pretrained(path, *args, _auto_class=auto_class, _name=name, **kwargs):
                loaded.append((_name, kwargs.get("revision"), kwargs.get("trust_remote_code")))
                return _auto_class.from_pretrained(path, *args, **kwargs)

        monkeypatch.setattr(discriminator_factory, name, Recording)
    GAILTrainer(
        model=tiny_model_path,
        args=_config(tmp_path, model_init_kwargs={"revision": "main"}),
        train_dataset=prompt_completion_dataset,
    )
    assert ("AutoModelForCausalLM", "main", False) in loaded
    assert ("AutoTokenizer", "main", False) in loaded


@pytest.mark.parametrize(
    ("level", "wrong_class", "named"),
    [
        ("sequence", "AutoModelForTokenClassification", "AutoModelForSequenceClassification"),
        ("token", "AutoModelForSequenceClassification", "AutoModelForTokenClassification"),
    ],
)
def test_a_discriminator_with_the_wrong_head_for_its_level_is_refused(
    tmp_path, tiny_model_path, prompt_completion_dataset, level, wrong_class, named
):
    import transformers

    model = getattr(transformers, wrong_class).from_pretrained(tiny_model_path, num_labels=1)
    # The scorer's own words, then the config fields that chose the kind
    with pytest.raises(
        ValueError, match=f"a {level}-level discriminator needs .*{named}.*`disc_level` \\(here '{level}'\\)"
    ):
        GAILTrainer(
            model=tiny_model_path,
            discriminator=model,
            args=_config(tmp_path, disc_level=level, disc_type="classifier"),
            train_dataset=prompt_completion_dataset,
        )


def test_a_discriminator_path_that_does_not_exist_is_named(tmp_path, tiny_model_path, prompt_completion_dataset):
    # `from_pretrained` would take it for a Hub id and complain about repository names
    with pytest.raises(FileNotFoundError, match="`discriminator` .*nowhere' is a path that does not exist"):
        GAILTrainer(
            model=tiny_model_path,
            discriminator=str(tmp_path / "nowhere"),
            args=_config(tmp_path),
            train_dataset=prompt_completion_dataset,
        )


def test_deepspeed_zero3_is_refused_naming_the_alternatives(
    tmp_path, tiny_model_path, prompt_completion_dataset, monkeypatch
):
    # Its `zero.Init` would partition the discriminator's weights with no engine to gather them: a failure at the
    # first forward
    import transformers.integrations

    monkeypatch.setattr(transformers.integrations, "is_deepspeed_zero3_enabled", lambda: True)
    with pytest.raises(ValueError, match="ZeRO-3.*ZeRO-2.*FSDP"):
        GAILTrainer(model=tiny_model_path, args=_config(tmp_path), train_dataset=prompt_completion_dataset)


def test_a_policy_built_in_memory_trains_with_a_copy_of_itself_as_discriminator(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    policy = _built_in_memory(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    trainer = GAILTrainer(
        model=policy, args=_config(tmp_path), train_dataset=prompt_completion_dataset, processing_class=tokenizer
    )
    discriminator = trainer.discriminator.model
    # A copy: the same weights (so that `log q_phi - log pi = 0` at the start), none of them shared with the policy
    assert _parameters_equal(discriminator, trainer.model)
    assert not {p.data_ptr() for p in discriminator.parameters()} & {p.data_ptr() for p in trainer.model.parameters()}
    trainer.train()
    assert not _parameters_equal(discriminator, trainer.model)
    trainer.save_model()
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "discriminator" / "model.safetensors").is_file()


def test_a_policy_changed_in_memory_is_copied_with_its_changes(tmp_path, tiny_model_path, prompt_completion_dataset):
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    with torch.no_grad():  # as after training it in memory: its checkpoint on disk no longer is the policy
        for parameter in policy.parameters():
            parameter.add_(0.01)
    policy.get_input_embeddings().requires_grad_(False)  # frozen in the policy, trained in the discriminator
    trainer = GAILTrainer(model=policy, args=_config(tmp_path), train_dataset=prompt_completion_dataset)
    assert _parameters_equal(trainer.discriminator.model, policy)
    assert all(parameter.requires_grad for parameter in trainer.discriminator.model.parameters())
    assert not policy.get_input_embeddings().weight.requires_grad


@pytest.mark.parametrize(
    ("in_memory", "given", "config", "named"),
    [
        ("model", {}, {}, "pass it as `processing_class`"),
        ("discriminator", {}, {}, "pass it as `discriminator_processing_class`"),
        ("model", {"processing_class"}, {"disc_type": "classifier"}, "pass `discriminator`"),
    ],
)
def test_what_a_model_built_in_memory_lacks_is_refused_naming_the_argument_to_pass(
    tmp_path, tiny_model_path, prompt_completion_dataset, in_memory, given, config, named
):
    kwargs = {"model": tiny_model_path, in_memory: _built_in_memory(tiny_model_path)}
    kwargs |= {name: AutoTokenizer.from_pretrained(tiny_model_path) for name in given}
    with pytest.raises(ValueError, match=rf"built in memory \(its `name_or_path` is empty\).*{named}"):
        GAILTrainer(args=_config(tmp_path, **config), train_dataset=prompt_completion_dataset, **kwargs)


def test_a_peft_policy_s_default_discriminator_has_its_adapter_merged_and_trains_in_full(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    policy = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_path), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():  # a trained adapter: LoRA starts with B = 0, which would leave the base model's outputs
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    trainer = GAILTrainer(model=policy, args=_config(tmp_path), train_dataset=prompt_completion_dataset)
    discriminator = trainer.discriminator.model
    input_ids = torch.tensor([[5, 17, 42, 9, 100]])
    with torch.no_grad():
        torch.testing.assert_close(discriminator(input_ids).logits, policy(input_ids).logits)
        with policy.disable_adapter():  # what loading the base checkpoint again gave: the adapter left out
            assert not torch.allclose(discriminator(input_ids).logits, policy(input_ids).logits)
    assert all(parameter.requires_grad for parameter in discriminator.parameters())


@pytest.mark.parametrize(("level", "task_type"), [("sequence", "SEQ_CLS"), ("token", "TOKEN_CLS")])
def test_a_classifier_adapter_that_would_leave_its_new_head_untrained_is_refused(
    tmp_path, tiny_model_path, prompt_completion_dataset, level, task_type
):
    # Without the task type the one-label head stayed random, untrained, and out of the saved adapter
    args = _config(tmp_path, disc_type="classifier", disc_level=level)
    lora = {"r": 4, "target_modules": ["q_proj", "v_proj"]}
    with pytest.raises(
        ValueError, match=rf"`discriminator_peft_config` has `task_type=None`.*`task_type='{task_type}'`"
    ):
        GAILTrainer(
            model=tiny_model_path,
            args=args,
            train_dataset=prompt_completion_dataset,
            discriminator_peft_config=LoraConfig(**lora),
        )
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=args,
        train_dataset=prompt_completion_dataset,
        discriminator_peft_config=LoraConfig(**lora, task_type=task_type),
    )
    head = [
        name for name, p in trainer.discriminator.model.named_parameters() if p.requires_grad and "lora" not in name
    ]
    assert head and all("score" in name for name in head)


def test_the_gradient_penalty_under_fsdp2_is_refused_in_the_config_s_terms(tiny_model_path):
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from trl_irl import Discriminator
    from trl_irl.trainer.discriminator_factory import shards_discriminator

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    fsdp2 = SimpleNamespace(is_fsdp2=True)
    with pytest.raises(ValueError, match="set `disc_gradient_penalty=0`"):
        shards_discriminator(fsdp2, Discriminator(model, tokenizer, gradient_penalty=0.1))
    assert shards_discriminator(fsdp2, Discriminator(model, tokenizer))
    assert not shards_discriminator(SimpleNamespace(is_fsdp2=False), Discriminator(model, tokenizer))


def test_a_classifier_given_as_the_likelihood_ratio_is_refused_naming_disc_type(
    tmp_path, tiny_model_path, prompt_completion_dataset
):
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    with pytest.raises(
        ValueError, match=r"no language-modelling head.*`disc_type` \(here 'likelihood_ratio'\) and `disc_level`"
    ):
        GAILTrainer(
            model=tiny_model_path,
            discriminator=classifier,
            args=_config(tmp_path, disc_type="likelihood_ratio"),
            train_dataset=prompt_completion_dataset,
        )
