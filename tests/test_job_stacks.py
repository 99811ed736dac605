"""Grouping a job's ranks by their main thread's stack (pure: dumps in, words out)."""

from __future__ import annotations

from typing import Optional

from sentinel.daemon.job_stacks import Rank, summarise
from sentinel.formats.evidence import Dump, Frame, ThreadStack
from sentinel.host.procid import ProcessIdentity

TORCH = "/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py"


def rank(number: Optional[int], pid: int) -> Rank:
    return Rank(number, ProcessIdentity(pid=pid, start_ticks=1, boot_id="b"))


def main_thread(*frames: tuple[str, int, str]) -> Dump:
    stack = [Frame(path, line, function) for path, line, function in frames]
    return Dump(threads=[ThreadStack("0x1", False, [*stack, Frame("/job/train.py", 90, "<module>")])])


def waiting(line: int = 2806) -> Dump:
    return main_thread((TORCH, line, "all_reduce"), ("/job/train.py", 42, "step"))


def test_the_odd_rank_is_named_and_the_innermost_line_does_not_split_a_group() -> None:
    odd = main_thread(("/job/train.py", 17, "straggle"), ("/job/train.py", 40, "step"))
    facts = summarise([(rank(0, 10), waiting(), ""), (rank(1, 11), waiting(2810), ""),
                       (rank(2, 12), odd, ""), (rank(3, 13), waiting(), "")])
    assert facts["where"] == ("ranks 0, 1, 3 wait in all_reduce (distributed_c10d.py:2806); "
                              "rank 2 is in straggle() (train.py:17)")
    assert "evidence_missing" not in facts
    assert facts["stacks"].startswith("ranks 0, 1, 3, main thread (most recent call first):\n"
                                      f'  File "{TORCH}", line 2806 in all_reduce')


def test_an_outer_line_that_differs_is_another_wait() -> None:
    elsewhere = main_thread((TORCH, 2806, "all_reduce"), ("/job/train.py", 55, "step"))
    facts = summarise([(rank(0, 10), waiting(), ""), (rank(1, 11), waiting(), ""),
                       (rank(2, 12), elsewhere, "")])
    assert facts["where"] == ("ranks 0, 1 wait in all_reduce (distributed_c10d.py:2806); "
                              "rank 2 is in all_reduce() (distributed_c10d.py:2806)")


def test_every_rank_in_the_same_wait_and_the_missing_ones_with_their_reason() -> None:
    same = summarise([(rank(0, 10), waiting(), ""), (rank(1, 11), waiting(), "")])
    assert same["where"] == "all ranks 0, 1 wait in all_reduce (distributed_c10d.py:2806)"
    partly = summarise([(rank(0, 10), waiting(), ""), (rank(1, 11), None, "py-spy is not installed"),
                        (rank(None, 4242), None, "py-spy is not installed")])
    assert partly["where"] == ("rank 0 waits in all_reduce (distributed_c10d.py:2806); "
                               "stacks not available for rank 1, pid 4242: py-spy is not installed")
    assert partly["evidence_missing"] == "rank 1, pid 4242: py-spy is not installed"
    gone = summarise([(rank(0, 10), None, "the process is gone")])
    assert gone == {"evidence_missing": "the process is gone"}
    assert summarise([]) == {"evidence_missing": "no live rank to ask"}
