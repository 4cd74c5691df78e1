"""Regenerates trl_irl/data/counting_{train,eval}.jsonl, the demonstration set the tests train on.

Each demonstration counts from `start` by `step` for `count` numbers. Early tokens fix the rest of the response
(the first number, then the step), so a mistake at the start compounds: the situation occupancy weighting is for.
The evaluation prompts are held out from training.
"""

import json
import random
from pathlib import Path


def main() -> None:
    demonstrations = [
        {
            "prompt": f"Count from {start} by {step}, {count} numbers:",
            "completion": " " + " ".join(str(start + i * step) for i in range(count)),
        }
        for start in range(0, 30)
        for step in range(1, 5)
        for count in range(3, 7)
    ]
    random.Random(0).shuffle(demonstrations)
    data_dir = Path(__file__).resolve().parent.parent / "trl_irl" / "data"
    splits = {"eval": demonstrations[:48], "train": demonstrations[48:]}
    for split, rows in splits.items():
        with open(data_dir / f"counting_{split}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        print(f"{split}: {len(rows)} demonstrations")


if __name__ == "__main__":
    main()
