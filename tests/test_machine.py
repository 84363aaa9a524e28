"""Who else uses the CPUs: other processes' share is measured from /proc/stat, not guessed."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planet_torch.machine import CpuSample, cpu_sample, others_cpus

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")

BUSY = "import time\nt = time.{clock}()\nwhile time.{clock}() - t < {seconds}: pass\n"


def test_a_stranger_busy_loop_counts_as_another_process_cpu() -> None:
    """An orphaned busy loop (its parent, a shell, has exited: not our child) while we sleep."""
    subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -c "{BUSY.format(clock="time", seconds=2.5)}" &'],
        check=True,
    )
    time.sleep(0.3)  # it has started
    start = cpu_sample()
    time.sleep(1.5)
    others = others_cpus(start, cpu_sample())
    assert others >= 0.7, others  # about one CPU (more if the other test worker runs)


def test_this_process_and_its_children_are_not_others() -> None:
    """Our own busy work, in this process and in a child (a vector-env worker), is ours."""
    start = cpu_sample()
    child = subprocess.Popen([sys.executable, "-c", BUSY.format(clock="process_time", seconds=1)])
    t = time.process_time()
    while time.process_time() - t < 1.0:  # one CPU second of our own, however shared the CPU
        pass
    child.wait()
    end = cpu_sample()
    assert start is not None and end is not None
    own = end.own_seconds - start.own_seconds
    assert 1.95 <= own <= 2.6, own  # 1 CPU second here, 1 in the child (+ its interpreter start)


def test_others_are_the_busy_cpu_seconds_minus_ours_per_wall_second() -> None:
    """3 busy CPU seconds in 2 wall seconds, 1 of them ours: others took 1 CPU."""
    start, end = CpuSample(10.0, 100.0, 5.0), CpuSample(12.0, 103.0, 6.0)
    assert others_cpus(start, end) == 1.0
    assert others_cpus(start, CpuSample(12.0, 103.0, 8.0)) == 0.0  # ours alone: nobody else
    assert math.isnan(others_cpus(start, None))  # not measurable (not Linux)
