import json

import pytest
import torch
from helpers import adversarial_config, fake_sft_run, fast_config
from transformers import AutoModelForCausalLM
from trl import SFTConfig, SFTTrainer

from trl_irl import GAILConfig, GAILTrainer, sft_run_checkpoints


def test_a_real_sft_run_gives_its_halfway_checkpoint_to_the_policy_and_its_end_to_the_discriminator(
    tiny_model_path, prompt_completion_dataset, tmp_path
):
    args = fast_config(SFTConfig, tmp_path / "sft", max_steps=4, save_strategy="steps", save_steps=2)
    sft = SFTTrainer(model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset)
    sft.train()
    sft.save_model()

    checkpoints = sft_run_checkpoints(tmp_path / "sft")

    assert (checkpoints.policy_step, checkpoints.discriminator_step) == (2, 4)
    assert checkpoints.policy == str(tmp_path / "sft" / "checkpoint-2")
    assert checkpoints.discriminator == str(tmp_path / "sft")
    trainer = GAILTrainer(
        model=checkpoints.policy,
        discriminator=checkpoints.discriminator,
        args=adversarial_config(GAILConfig, tmp_path / "gail"),
        train_dataset=prompt_completion_dataset,
    )
    halfway = AutoModelForCausalLM.from_pretrained(checkpoints.policy).state_dict()
    end = sft.model.state_dict()
    policy_weights = trainer.model.state_dict()
    discriminator_weights = trainer.discriminator.model.state_dict()
    name = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(policy_weights[name], halfway[name])
    assert torch.equal(discriminator_weights[name], end[name])
    assert not torch.equal(halfway[name], end[name])  # two different points of the run


def test_the_checkpoint_nearest_the_requested_fraction_is_chosen(tmp_path):
    run = fake_sft_run(tmp_path / "sft", [500, 1000, 1500, 2000, 2500, 3000], max_steps=3000)

    assert sft_run_checkpoints(run).policy_step == 1500
    assert sft_run_checkpoints(run, policy_at=0.75).policy_step == 2000  # 2250 is as near 2000 as 2500: the earlier
    assert sft_run_checkpoints(run, policy_at=0.9).policy == str(run / "checkpoint-2500")
    assert sft_run_checkpoints(run).discriminator == str(run)


def test_the_end_is_the_planned_last_step_when_its_checkpoint_was_not_kept(tmp_path):
    # save_total_limit or save_steps that do not divide max_steps: the last checkpoint is not the end, the run's
    # own state says where it ended
    run = fake_sft_run(tmp_path / "sft", [1500], max_steps=3000)

    checkpoints = sft_run_checkpoints(run)

    assert (checkpoints.policy_step, checkpoints.discriminator_step) == (1500, 3000)


def test_the_step_recorded_beside_the_final_model_wins_over_the_planned_end(tmp_path):
    # `trainer.save_state()` after a run stopped early (step 2500 of a planned 3000)
    run = fake_sft_run(tmp_path / "sft", [1000, 2000], max_steps=3000)
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 2500, "max_steps": 3000}))

    checkpoints = sft_run_checkpoints(run)

    assert (checkpoints.policy_step, checkpoints.discriminator_step) == (1000, 2500)


def test_checkpoints_of_two_runs_in_one_directory_are_warned_about_naming_what_was_chosen(tmp_path, caplog):
    # A first run planned 3000 steps; a second, written to the same directory, 1000
    run = fake_sft_run(tmp_path / "sft", [1500, 3000], max_steps=3000)
    for step in (500, 1000):
        checkpoint = fake_sft_run(tmp_path / f"other-{step}", [step], max_steps=1000, final_model=False)
        (checkpoint / f"checkpoint-{step}").rename(run / f"checkpoint-{step}")
    with caplog.at_level("WARNING"):
        checkpoints = sft_run_checkpoints(run)
    assert "runs that planned different ends (max_steps 1000: checkpoint-500, checkpoint-1000; max_steps 3000" in (
        caplog.text
    )
    assert f"starts from checkpoint-{checkpoints.policy_step}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        sft_run_checkpoints(fake_sft_run(tmp_path / "one-run", [1500, 3000], max_steps=3000))
    assert "planned different ends" not in caplog.text


@pytest.mark.parametrize("learned", ["discriminator", "reward_model"])
def test_a_gail_or_airl_run_s_directory_is_refused_as_an_sft_run(tmp_path, learned):
    # Its checkpoints are an adversarial run's: the "policy" would be GAIL's middle, the "discriminator" its end
    run = fake_sft_run(tmp_path / "gail", [1500, 3000], max_steps=3000)
    (run / learned).mkdir()
    with pytest.raises(ValueError, match=f"holds a `{learned}/` folder: it is the output directory of a GAIL or AIRL"):
        sft_run_checkpoints(run)


def test_without_a_final_model_the_last_checkpoint_is_the_end(tmp_path):
    run = fake_sft_run(tmp_path / "sft", [1000, 2000], final_model=False)

    checkpoints = sft_run_checkpoints(run)

    assert checkpoints.policy == str(run / "checkpoint-1000")
    assert checkpoints.discriminator == str(run / "checkpoint-2000")


@pytest.mark.parametrize(
    ("steps", "final_model", "message"),
    [
        ([], True, "holds no checkpoint-<step> directory"),
        ([3000], True, "no checkpoint before the run's end"),
        ([3000], False, "no checkpoint before the run's end"),
    ],
)
def test_a_run_without_an_earlier_checkpoint_is_refused_with_how_to_save_one(tmp_path, steps, final_model, message):
    run = fake_sft_run(tmp_path / "sft", steps, max_steps=3000, final_model=final_model)

    with pytest.raises(ValueError, match=message) as error:
        sft_run_checkpoints(run)
    assert "save_steps=0.5" in str(error.value)
    assert str(run) in str(error.value)


def test_a_checkpoint_directory_without_weights_is_not_a_checkpoint(tmp_path):
    run = fake_sft_run(tmp_path / "sft", [1000, 2000], max_steps=2000)
    (run / "checkpoint-1000" / "model.safetensors").unlink()

    with pytest.raises(ValueError, match="no checkpoint before the run's end"):
        sft_run_checkpoints(run)


def test_a_missing_directory_and_a_fraction_outside_the_run_are_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        sft_run_checkpoints(tmp_path / "does-not-exist")
    run = fake_sft_run(tmp_path / "sft", [1000, 2000])
    for fraction in (0, 1, 1.5):
        with pytest.raises(ValueError, match="`policy_at`"):
            sft_run_checkpoints(run, policy_at=fraction)


def test_an_epoch_based_sft_run_saved_at_half_its_length_gives_the_recipe_s_two_checkpoints(
    tiny_model_path, prompt_completion_dataset, tmp_path
):
    # TRL's default SFT counts epochs (`max_steps=-1`): a fraction of the run saves halfway all the same
    args = fast_config(
        SFTConfig, tmp_path / "sft", max_steps=-1, num_train_epochs=1, save_strategy="steps", save_steps=0.5
    )
    sft = SFTTrainer(model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset)
    sft.train()
    sft.save_model()

    checkpoints = sft_run_checkpoints(tmp_path / "sft")

    total = sft.state.max_steps  # 64 rows in batches of 8
    assert (checkpoints.policy_step, checkpoints.discriminator_step) == (total // 2, total)


def test_an_interrupted_checkpoint_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    from safetensors.torch import save_file

    run = fake_sft_run(tmp_path / "sft", [1000, 1500, 2000], max_steps=3000)
    # Lost while writing: checkpoint-1500's trainer state never came, checkpoint-2000's index names a shard not written
    (run / "checkpoint-1500" / "trainer_state.json").unlink()
    (run / "checkpoint-2000" / "model.safetensors").unlink()
    (run / "checkpoint-2000" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})
    )
    save_file({"weight": torch.zeros(1)}, run / "checkpoint-2000" / "model-00001-of-00002.safetensors")
    with caplog.at_level("WARNING", logger="trl_irl.sft_run"):
        checkpoints = sft_run_checkpoints(run)
    assert checkpoints.policy_step == 1000  # nearest 1500 of the complete ones
    [warning] = [record.getMessage() for record in caplog.records]
    assert "checkpoint-1500 (it has no trainer_state.json" in warning
    assert "checkpoint-2000 (its model.safetensors.index.json names missing shards ['model-00002-of-00002" in warning


def test_a_truncated_final_model_leaves_the_end_to_the_last_complete_checkpoint(tmp_path, caplog):
    run = fake_sft_run(tmp_path / "sft", [1000, 2000], max_steps=2000)
    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:20])  # a write cut short
    with caplog.at_level("WARNING", logger="trl_irl.sft_run"):
        checkpoints = sft_run_checkpoints(run)
    assert checkpoints.discriminator == str(run / "checkpoint-2000") and checkpoints.policy_step == 1000
    assert "model.safetensors cannot be read" in caplog.text


def test_a_model_in_memory_is_refused_saying_the_run_s_directory_is_needed(tiny_model_path):
    from transformers import AutoModelForCausalLM

    # It failed inside `pathlib` with "expected str, bytes or os.PathLike object"
    with pytest.raises(TypeError, match=r"takes the SFT run's `output_dir` \(a path\), got a LlamaForCausalLM"):
        sft_run_checkpoints(AutoModelForCausalLM.from_pretrained(tiny_model_path))


def test_a_lora_sft_run_gives_its_adapter_checkpoints_which_gail_loads_on_their_base_model(
    tiny_model_path, prompt_completion_dataset, tmp_path
):
    from peft import LoraConfig, PeftModel

    args = fast_config(SFTConfig, tmp_path / "sft", max_steps=4, save_strategy="steps", save_steps=2)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    sft = SFTTrainer(model=tiny_model_path, args=args, train_dataset=prompt_completion_dataset, peft_config=lora)
    sft.train()
    sft.save_model()

    checkpoints = sft_run_checkpoints(tmp_path / "sft")

    assert (checkpoints.policy_step, checkpoints.discriminator_step) == (2, 4)
    assert (tmp_path / "sft" / "checkpoint-2" / "adapter_model.safetensors").is_file()
    trainer = GAILTrainer(
        model=checkpoints.policy,
        discriminator=checkpoints.discriminator,
        args=adversarial_config(GAILConfig, tmp_path / "gail"),
        train_dataset=prompt_completion_dataset,
    )
    # Each is its base model with the adapter of its point of the run: the two score alike only if both loaded it
    input_ids = torch.tensor([[5, 17, 42, 9, 100]])
    with torch.no_grad():
        end = sft.model.eval()(input_ids).logits
        halfway = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), checkpoints.policy)
        torch.testing.assert_close(trainer.discriminator.model.eval()(input_ids).logits, end)
        torch.testing.assert_close(trainer.model.eval()(input_ids).logits, halfway.eval()(input_ids).logits)
        assert not torch.allclose(end, halfway(input_ids).logits)
    # Both adapters train on (loaded by `from_pretrained` they were frozen, for inference: nothing to train)
    models = {"policy": trainer.model, "discriminator": trainer.discriminator.model}
    before = {
        (role, name): parameter.detach().clone()
        for role, model in models.items()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }
    assert {role for role, _ in before} == {"policy", "discriminator"}
    assert all("lora" in name for _, name in before)
    trainer.train()
    for role, model in models.items():
        changed = [not torch.equal(p, before[role, n]) for n, p in model.named_parameters() if (role, n) in before]
        assert any(changed), role


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "sharded"])
def test_checkpoints_saved_as_pytorch_bins_or_in_shards_are_chosen(tmp_path, layout):
    from safetensors.torch import save_file

    run = fake_sft_run(tmp_path / "sft", [], final_model=False)
    for step in (1000, 2000):
        checkpoint = run / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 2000}))
        if layout == "pytorch_model.bin":
            torch.save({"weight": torch.zeros(1)}, checkpoint / "pytorch_model.bin")
        else:
            shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
            for index, shard in enumerate(shards):
                save_file({f"weight_{index}": torch.zeros(1)}, checkpoint / shard)
            weight_map = {f"weight_{index}": shard for index, shard in enumerate(shards)}
            (checkpoint / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))

    checkpoints = sft_run_checkpoints(run)

    assert (checkpoints.policy_step, checkpoints.discriminator_step) == (1000, 2000)
    assert checkpoints.discriminator == str(run / "checkpoint-2000")
