"""Run under ``accelerate launch`` (2 CPU ranks) by test_distributed: a ClipWindows DataLoader with the
trainer's collate goes through accelerate's DEFAULT ``prepare`` (an IterableDataset: batches dispatched
from rank 0 with broadcast) and every rank receives its batches; with the default collate it fails."""

from __future__ import annotations

import sys

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from model.data import ClipWindows, DataParams
from model.training.data import collate


def main(shards: str, size: int, collated: bool) -> None:
    accelerator = Accelerator()
    data = DataParams(size=size, stage1_features=["caption"], shuffle_buffer=4)
    ds = ClipWindows(data, "stage1", shard_root=shards, rank=0, world_size=1)  # rank 0 reads, accelerate dispatches
    loader = accelerator.prepare(DataLoader(ds, batch_size=2, collate_fn=collate if collated else None))
    batches = [b for b, _ in zip(loader, range(2))]
    shapes = [tuple(b["target"].shape) for b in batches]
    print(f"rank {accelerator.process_index}: {shapes} {sorted(batches[0])}", flush=True)
    assert shapes[0] == (2, 3, size, size) and all(s[1:] == (3, size, size) for s in shapes), shapes
    assert isinstance(batches[0]["worker"], torch.Tensor)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "collate")
