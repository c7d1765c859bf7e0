"""Two CPU processes (gloo DDP, `torch.distributed.run`): identical weights and identical reference on both ranks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"],
    # on a machine without GPUs, --multi_gpu only sets up the 2-rank process group; use_cpu=True keeps it on gloo
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", "29534"],
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_process_ddp_keeps_ranks_identical(tmp_path, launcher):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = LAUNCHERS[launcher] + [os.path.join(HERE, "ddp_train_script.py"), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys() and any(k.startswith("reference.") for k in a)
    for name in a:
        assert torch.equal(a[name], b[name]), name
