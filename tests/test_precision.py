"""
The discriminator on half-precision checkpoints: its trainable parameters are float32 whatever the checkpoint's
dtype, so that small steps are not rounded away (bf16) and the first step does not overflow (fp16), and its forward
runs under the policy's bf16 autocast.
"""

import pytest
import torch
from helpers import adversarial_config
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_irl import Discriminator, GAILConfig, GAILTrainer
from trl_irl.data import load_counting_demonstrations


def _texts():
    rows = load_counting_demonstrations("train").select(range(16))
    expert = [row["prompt"] + row["completion"] for row in rows]
    policy = [row["prompt"] + " " + " ".join(reversed(row["completion"].split())) for row in rows]
    return expert, policy


def _changed_share(before: dict, model) -> float:
    changed = sum(int((p.detach().float() != before[n].float()).sum()) for n, p in model.named_parameters())
    return changed / sum(p.numel() for p in before.values())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_checkpoint_trains_in_float32(tiny_model_path, dtype):
    # At the default learning rate (1e-5), in bf16 88% of the weights were unchanged after one update, and an fp16
    # checkpoint gave NaN; float32 changes the same share as a float32 checkpoint does
    shares = {}
    for load_dtype in (torch.float32, dtype):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1, dtype=load_dtype)
        discriminator = Discriminator(model, AutoTokenizer.from_pretrained(tiny_model_path), learning_rate=1e-5)
        assert all(p.dtype == torch.float32 for p in discriminator.model.parameters())
        before = {n: p.detach().clone() for n, p in discriminator.model.named_parameters()}
        stats = discriminator.update(*_texts()).stats
        assert all(torch.isfinite(p).all() for p in discriminator.model.parameters())
        assert torch.isfinite(torch.tensor(list(stats.values()))).all()
        shares[load_dtype] = _changed_share(before, discriminator.model)
    assert shares[dtype] > 0.9 * shares[torch.float32] > 0, shares


def test_the_forward_runs_under_autocast_and_returns_float32(tiny_model_path):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    discriminator = Discriminator(model, AutoTokenizer.from_pretrained(tiny_model_path), autocast_dtype=torch.bfloat16)
    seen = []
    handle = discriminator.model.score.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    expert, policy = _texts()
    logits = discriminator.logits(expert)
    discriminator.update(expert, policy)
    handle.remove()
    assert seen and set(seen) == {torch.bfloat16}  # the matmuls ran in bf16
    assert logits.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in discriminator.model.parameters())


def test_gail_learns_from_a_bf16_checkpoint_with_bf16_mixed_precision(tmp_path, tiny_model_path):
    # The path of most Hub checkpoints: weights in bf16, `bf16=True`
    args = adversarial_config(
        GAILConfig,
        tmp_path,
        bf16=True,
        use_cpu=True,
        model_init_kwargs={"dtype": "bfloat16"},
        disc_init_kwargs={"dtype": "bfloat16"},
        disc_learning_rate=1e-5,
        max_steps=2,
    )
    dataset = load_counting_demonstrations("train").select(range(32))
    trainer = GAILTrainer(model=tiny_model_path, args=args, train_dataset=dataset)
    assert trainer.discriminator.autocast_dtype == torch.bfloat16
    before = {n: p.detach().clone() for n, p in trainer.discriminator.model.named_parameters()}
    trainer.train()
    assert _changed_share(before, trainer.discriminator.model) > 0.5
    assert all(torch.isfinite(p).all() for p in trainer.discriminator.model.parameters())
    assert all(torch.isfinite(torch.tensor(v)) for v in trainer.state.log_history[-2].values() if isinstance(v, float))


def _start_logits(trainer) -> torch.Tensor:
    """The discriminator's logits of a few demonstrations before any update, as its reward scores completions."""
    rows = trainer.train_dataset.select(range(8))
    prompts, demonstrations = list(rows["prompt"]), list(rows["demonstration"])
    reward = trainer.discriminator_reward
    return trainer.discriminator.logits(
        reward.sample_encoder(prompts, demonstrations), reward._offsets(prompts, demonstrations, None)
    )


@pytest.mark.parametrize(
    "weights, bf16, exact",
    [("float32", False, True), ("float32", True, True), ("bfloat16", True, False), ("bfloat16", False, False)],
)
def test_a_copy_of_the_policy_starts_at_zero_where_both_run_in_one_precision(
    tmp_path, tiny_model_path, caplog, weights, bf16, exact
):
    # float32 weights under bf16 mixed precision (the common GPU setting) used to start at about 1e-3 nats of noise:
    # `log pi` ran outside the discriminator's autocast. With bf16 weights the float32 copy cannot match: warned
    args = adversarial_config(
        GAILConfig, tmp_path, bf16=bf16, use_cpu=True, model_init_kwargs={"dtype": weights}, max_steps=1
    )
    dataset = load_counting_demonstrations("train").select(range(32))
    with caplog.at_level("WARNING", logger="trl_irl.trainer.discriminator_factory"):
        trainer = GAILTrainer(model=tiny_model_path, args=args, train_dataset=dataset)
    logits = _start_logits(trainer)
    assert (logits == 0).all().item() == exact
    if not exact:
        assert logits.abs().max() < 0.05  # rounding noise, not knowledge
    assert ("starts as rounding noise" in caplog.text) == (not exact)
