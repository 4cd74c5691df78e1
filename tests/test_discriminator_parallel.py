"""trl_irl/discriminator/parallel.py: where a discriminator runs, replicated or sharded, and what it refuses."""

import pytest
import torch
from helpers import classifier_discriminator
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_irl import Discriminator
from trl_irl.discriminator.parallel import Replicated, all_processes_agree, average_across_processes, move_to_device


def test_on_one_process_the_collectives_are_identities_and_a_replica_is_the_model():
    # Several processes: tests/distributed (test_distributed.py) runs them under torchrun
    values = torch.tensor([1.0, -2.0])
    assert average_across_processes(values) is values and values.tolist() == [1.0, -2.0]
    assert all_processes_agree(torch.tensor(1.0)) and not all_processes_agree(torch.tensor(0.0))
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    replicated = Replicated()
    assert replicated.full_norm(torch.tensor(3.0)).item() == 3.0
    assert replicated.model_state_dict(model) is None  # `save_pretrained` writes the weights
    assert replicated.optimizer_state_dict(model, optimizer) == optimizer.state_dict()
    assert move_to_device(model, "cpu", on_meta_device=False) is False  # the same parameter objects


def test_weights_on_the_meta_device_with_no_process_to_send_them_are_refused(tiny_model_path):
    from transformers import AutoConfig

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(
            AutoConfig.from_pretrained(tiny_model_path, num_labels=1)
        )
    discriminator = Discriminator(model, AutoTokenizer.from_pretrained(tiny_model_path))
    with pytest.raises(ValueError, match="meta device.*cpu_ram_efficient_loading"):
        discriminator.to("cpu")


def test_sharding_refuses_what_it_cannot_do_before_touching_the_model(tiny_model_path):
    from peft import LoraConfig, get_peft_model

    with pytest.raises(ValueError, match="several processes"):
        classifier_discriminator(tiny_model_path).shard()
    with pytest.raises(ValueError, match="gradient penalty.*gradient_penalty=0"):
        classifier_discriminator(tiny_model_path, gradient_penalty=1.0).shard()
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS"))
    discriminator = Discriminator(lora, AutoTokenizer.from_pretrained(tiny_model_path))
    with pytest.raises(ValueError, match="PEFT.*replicated"):
        discriminator.shard()
    assert not discriminator.sharded
