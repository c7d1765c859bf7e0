"""Train a Glauber diffusion LM on text in two steps (runs in a couple of minutes on CPU with the defaults).

Step 1, the UL2 stage: a mixture of R-, S- and X-denoisers (`trainers.UL2DataCollator`) with the stock
`Seq2SeqTrainer`, as the paper turns Flan-T5 into UL2. Step 2, the Glauber stage: `GlauberTrainer` (SEDD loss against
a frozen EMA reference) on canvases of `--canvas_length` tokens packed from the corpus.

    python examples/train_text.py --output_dir out/text --max_steps 60 --num_rounds 1 --use_cpu
    accelerate launch --num_processes 2 examples/train_text.py --output_dir out/ddp --max_steps 60 --num_rounds 1
    python -m trainers.plot_loss out/text        # loss vs τ PNG from the logs

Defaults: a tiny random T5 and the shipped corpus `examples/data/corpus.txt`; pass `--model_name_or_path
google/flan-t5-small --dataset wikitext --dataset_split train` (with `--text_column text`) for a real run.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers.cli import parse_train_args  # noqa: E402
from trainers.recipe import run_text_recipe  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:] or ["--output_dir", "out/train_text", "--max_steps", "40", "--num_rounds", "1",
                            "--timesteps_per_chain", "8", "--canvas_length", "32", "--per_device_train_batch_size", "8", "--use_cpu",
                            "--learning_rate", "1e-3", "--logging_steps", "10", "--save_steps", "20",
                            "--reference_update_steps", "10", "--ul2_steps", "20"]
    run_text_recipe(*parse_train_args(argv))
