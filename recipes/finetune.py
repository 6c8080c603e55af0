"""Fine-tune a model directory from a YAML config: the same function as `kerasllm finetune`.

Usage:
    python recipes/finetune.py --config recipes/configs/finetune/sft.yaml --output runs/sft
    python recipes/finetune.py --config recipes/configs/finetune/partial.yaml --output runs/partial
    python recipes/finetune.py --config recipes/configs/finetune/lora.yaml \
        --set lora.rank=4 --set steps=500 --output runs/lora
    python recipes/finetune.py --config recipes/configs/finetune/sft.yaml \
        --set tasks=null --set data=my_train.jsonl --output runs/mine
    python recipes/finetune.py --output runs/sft --resume        # after a crash or kill -9

Then:
    kerasllm evaluate-tasks --model runs/sft/model
    kerasllm evaluate-tasks --model runs/demo/model --adapter runs/lora/adapter
    kerasllm lora merge --base runs/demo/model --adapter runs/lora/adapter --output runs/lora/merged

Config keys (every YAML key, settable with --set): docs/finetuning.md.
"""

import sys

from kerasllm.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
