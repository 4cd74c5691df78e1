"""
Every Python example of the README and of docs/ runs, so that none goes stale. The examples name Hub models and
datasets; here they run offline on the tiny local model and datasets of the tests (placeholders substituted, Hub
datasets served from fixtures), for two steps, with the other settings as written.
"""

import json
import re
import shutil
from pathlib import Path

import pytest


ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGES = [page for page in PAGES if "```python" in page.read_text()]
# Model names in the examples, and what stands in for them here
CAUSAL_LMS = (
    "Qwen/Qwen3-0.6B",
    "path/to/sft-model",
    "path/to/sft-checkpoint",
    "path/to/your-sft-checkpoint",
    "path/to/policy",
    "path/to/larger-sft-model",
)
ENCODERS = ("answerdotai/ModernBERT-base",)
# The output directory of an SFT run that saved a checkpoint halfway (`sft_run_checkpoints`)
SFT_RUNS = ("path/to/sft-run",)


def _sft_run(tiny_model_path: str, directory: Path) -> Path:
    """The tiny model as both the halfway checkpoint and the end of a two-step SFT run."""
    shutil.copytree(tiny_model_path, directory)
    shutil.copytree(tiny_model_path, directory / "checkpoint-1")
    (directory / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"global_step": 1, "max_steps": 2}))
    return directory


def _examples(page: Path) -> str:
    """A page's Python examples, in order, as one script: later examples use what earlier ones made."""
    return "\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL))


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_examples_run(
    page, tmp_path, monkeypatch, tiny_model_path, tiny_encoder_path, prompt_completion_dataset, preference_dataset
):
    import datasets
    from transformers import AutoModelForCausalLM, TrainingArguments
    from trl import GRPOConfig

    script = _examples(page)
    for name in CAUSAL_LMS:
        script = script.replace(f'"{name}"', repr(tiny_model_path))
    for name in ENCODERS:
        script = script.replace(f'"{name}"', repr(tiny_encoder_path))
    for name in SFT_RUNS:
        if f'"{name}"' in script:
            script = script.replace(f'"{name}"', repr(str(_sft_run(tiny_model_path, tmp_path / "sft-run"))))

    hub_datasets = {
        "trl-lib/Capybara": prompt_completion_dataset,
        "trl-lib/ultrafeedback_binarized": preference_dataset,
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *args, **kwargs: hub_datasets[name])
    post_init = TrainingArguments.__post_init__

    def quick(self):  # every config of the examples: two CPU steps, nothing reported
        self.bf16, self.fp16, self.max_steps, self.report_to = False, False, 2, "none"
        self.save_strategy, self.disable_tqdm, self.logging_steps = "no", True, 1
        if hasattr(self, "max_completion_length"):
            self.max_completion_length = 8
        post_init(self)

    monkeypatch.setattr(TrainingArguments, "__post_init__", quick)
    monkeypatch.chdir(tmp_path)
    prompts = prompt_completion_dataset.remove_columns("completion")
    namespace = {
        # Names the examples take as given
        "dataset": prompt_completion_dataset,
        "prompts": prompts,
        "new_prompts": prompts,
        "policy": tiny_model_path,
        "other_policy": AutoModelForCausalLM.from_pretrained(tiny_model_path),
        "grpo_args": GRPOConfig(output_dir=str(tmp_path / "grpo")),
    }
    exec(compile(script, str(page), "exec"), namespace)
