"""Write the example's prompts: jsonl files of {"id", "prompt"} rows.

    python examples/vllm/prepare.py                      # 2,000 prompts in examples/vllm/prompts/
    python examples/vllm/prepare.py --prompts 100000 --files 8
"""

import argparse
import json
from pathlib import Path

SUBJECTS = ["a lighthouse", "the moon", "a bicycle", "rain in spring", "an old library", "a chess game",
            "the first snow", "a city at night", "a sourdough loaf", "a migrating bird"]
TASKS = ["Write a haiku about {}.", "Describe {} in one sentence.", "Tell a short story about {}.",
         "List three facts about {}.", "Explain {} to a child."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--data-dir", default=str(Path(__file__).parent / "prompts"))
    args = parser.parse_args()
    folder = Path(args.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-args.prompts // args.files)
    for f in range(args.files):
        rows = range(f * per_file, min(args.prompts, (f + 1) * per_file))
        with open(folder / f"prompts-{f:03d}.jsonl", "w") as out:
            for i in rows:
                prompt = TASKS[i % len(TASKS)].format(SUBJECTS[i // len(TASKS) % len(SUBJECTS)])
                out.write(json.dumps({"id": f"p{i:06d}", "prompt": f"{prompt} (#{i})"}) + "\n")
    print(f"{args.prompts} prompts in {args.files} files under {folder}")


if __name__ == "__main__":
    main()
