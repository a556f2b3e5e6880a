"""DDP: two gloo processes on CPU train the same head as one process (same global batch)."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from curation.errors import ConfigError
from curation.stage1.distributed import DistEnv, env_from_environ, shard

CONFIG = {"epochs": 2, "batch_size": 16, "lr": 0.02, "checkpoint_every": 3}


def _data():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 2
    features = torch.randn(48, 2, 64, generator=g)
    features[labels == 1, 0, :8] += 2.0
    return features.half(), labels


def _train(env: DistEnv, checkpoint_dir=None) -> dict[str, torch.Tensor]:
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model
    from curation.stage1.train import TrainConfig, train_head
    from curation.stage1.views import ViewPolicy

    torch.set_num_threads(1)
    # Different init seeds per rank on purpose: DDP must broadcast rank 0's weights.
    model = Stage1Model.build(
        Stage1Config(views=ViewPolicy(grid=1, size=32)), backbone=tiny_random_backbone(seed=0), seed=env.rank
    )
    features, labels = _data()
    train_head(features, labels, TrainConfig(**CONFIG), model=model, env=env, checkpoint_dir=checkpoint_dir)
    return {k: v.detach().clone() for k, v in model._head_state().items()}


def _worker(rank: int, world: int, port: int, out: str, checkpoint_dir: str) -> None:
    from curation.stage1.distributed import init_distributed, shutdown

    import os

    environ = {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    os.environ.update(environ)
    env = init_distributed(environ, backend="gloo")
    try:
        state = _train(env, checkpoint_dir)
        torch.save(state, f"{out}.rank{rank}")
    finally:
        shutdown(env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_env_from_environ_and_sharding():
    env = env_from_environ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.is_main, env.backend) == (1, 2, False, "gloo")
    assert shard(torch.arange(7), env).tolist() == [1, 3, 5]
    assert env_from_environ({}).distributed is False
    with pytest.raises(ConfigError):
        env_from_environ({"RANK": "x"})
    with pytest.raises(ConfigError):
        DistEnv(rank=2, world_size=2)


def test_two_gloo_processes_match_one_process(tmp_path):
    single = _train(DistEnv())
    out = str(tmp_path / "state")
    mp.spawn(_worker, args=(2, _free_port(), out, str(tmp_path / "ckpt")), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.rank{r}") for r in range(2)]
    for key, value in single.items():
        # fp16 fast path: each rank rounds its partial gradient to fp16 (~1e-4 relative).
        torch.testing.assert_close(ranks[0][key], value, atol=1e-3, rtol=1e-3)
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # replicas stay identical
    assert (tmp_path / "ckpt" / "last.safetensors").is_file()  # written by rank 0
