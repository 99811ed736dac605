"""One rank of a real torchrun job (CPU, gloo) for the job tests.

    torchrun --standalone --nproc-per-node 4 torch_worker.py MODE [options]

Every rank joins the process group and prints ``RANK <rank> <pid>``; after
a barrier, rank 0 (every rank with ``--record-all``) starts
``sentinel.watch`` and rank 0 prints ``READY <run_id>``, then ``RUNNING``
once all ranks are in the training loop. MODE:

    finish   a few steps, then every rank returns
    sleep    steps until killed (the test kills a rank)
    raise    rank ``--rank`` raises RuntimeError in the @record main
    oom      rank ``--rank`` moves itself into the cgroup ``--cage`` and
             allocates until that cgroup's OOM killer kills it
    stall    rank ``--rank`` stops reporting progress (its heartbeat goes on)
             until ``--resume-file`` exists
    straggle every rank joins an all_reduce each step; from step 3, rank
             ``--rank`` sleeps in ``straggle()`` instead (until killed), so
             the others block in ``all_reduce``

The repository is on PYTHONPATH; torch comes from the interpreter's environment.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

import sentinel


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["finish", "sleep", "raise", "oom", "stall", "straggle"])
    parser.add_argument("--rank", type=int, default=3, help="the rank that fails")
    parser.add_argument("--name", default="job")
    parser.add_argument("--record-all", action="store_true")
    parser.add_argument("--cage", default="")
    parser.add_argument("--resume-file", default="")
    parser.add_argument("--stall-timeout", type=float, default=None)
    parser.add_argument("--steps", type=int, default=5)
    return parser.parse_args()


def hog(cage: str) -> None:
    with open(os.path.join(cage, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    chunks = []
    while True:  # until the cage's OOM killer ends this process
        chunks.append(bytearray(8 * 1024 * 1024))


def straggle() -> None:
    time.sleep(600)  # the test kills the job long before


@record
def main() -> None:
    args = parse()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    say(f"RANK {rank} {os.getpid()}")
    dist.barrier()
    run = None
    if rank == 0 or args.record_all:
        run = sentinel.watch(name=args.name, heartbeat_interval=0.2, stall_timeout=args.stall_timeout)
    dist.barrier()
    if rank == 0 and run is not None:
        say(f"READY {run.run_id}")
    dist.barrier()
    if rank == 0:
        say("RUNNING")
    failing = rank == args.rank
    step = 0
    while args.mode != "finish" or step < args.steps:
        step += 1
        stalled = args.mode == "stall" and failing and not os.path.exists(args.resume_file)
        if run is not None and not stalled:
            run.beat(step=step, loss=1.0 / step)
        if failing and args.mode == "raise" and step >= 3:
            raise RuntimeError(f"boom from rank {rank}")
        if failing and args.mode == "oom" and step >= 3:
            hog(args.cage)
        if args.mode == "straggle":
            if failing and step >= 3:
                straggle()
            dist.all_reduce(torch.ones(1))
        time.sleep(0.1)
    if run is not None:
        run.finish()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
