"""trl_irl/trainer/discriminator_start.py: the discriminator before the policy moves (pre-training, knowledge gap)."""

import pytest
from helpers import adversarial_config

from trl_irl import GAILConfig, GAILTrainer


def _config(tmp_path, **overrides) -> GAILConfig:
    return adversarial_config(GAILConfig, tmp_path, **overrides)


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_the_discriminator_pretraining_shows_progress_unless_tqdm_is_off(
    tmp_path, tiny_model_path, prompt_completion_dataset, capsys, disable_tqdm
):
    trainer = GAILTrainer(
        model=tiny_model_path,
        args=_config(tmp_path, max_steps=1, disc_pretraining_steps=3, disable_tqdm=disable_tqdm),
        train_dataset=prompt_completion_dataset,
    )
    capsys.readouterr()
    trainer.train()
    shown = "Pre-training the discriminator" in capsys.readouterr().err
    assert shown != disable_tqdm
