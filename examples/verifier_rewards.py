"""
The verifiable reward of `examples/gail_with_verifier.yaml`, as `reward_funcs: [examples.verifier_rewards.checker]`
names it (a dotted path, importable from the directory the command runs in, as with `trl grpo`). Replace `checker`
with your task's check (an answer compared with the reference, unit tests run); it takes what GRPO passes to a
reward function and returns one score per completion.
"""


def _text(completion) -> str:
    # Conversational datasets give each completion as a list of messages
    return completion[-1]["content"] if isinstance(completion, list) else completion


def checker(completions, **kwargs) -> list[float]:
    """A placeholder check: 1 where the completion ends a sentence, else 0."""
    return [1.0 if _text(completion).rstrip().endswith((".", "!", "?")) else 0.0 for completion in completions]
