"""docs/troubleshooting.md, provoked for real where this machine allows: each failure gives the
fix through `planet doctor` or a one-line CLI error, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import assert_one_line_error, planet, planet_here

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def precision_kept() -> None:
    """The doctor's precision line answered from a kept entry, as on any machine where a run or
    `planet doctor` measured once: these tests look at other checks, and the measurement costs
    5-15 seconds of bf16 timing per process (each test starts with an empty cache folder)."""
    from planet_torch.config import PAPER
    from planet_torch.models import precision

    m = PAPER.model
    probe = precision.conv_probe(m.cnn_depth, m.belief_size + m.state_size)  # as the doctor
    entry = {precision.machine_key(): {probe: {"speedup": 1.0, "measured": "by this test"}}}
    precision.precision_file().parent.mkdir(parents=True, exist_ok=True)
    precision.precision_file().write_text(json.dumps(entry))


@pytest.mark.parametrize(
    ("backend", "fix"),
    [("glfw", "set MUJOCO_GL=egl"), ("osmesa", "libosmesa6")],
)
@pytest.mark.usefixtures("precision_kept")
def test_mujoco_gl_backend_that_cannot_work_here_is_reported_with_its_fix(backend, fix, tmp_path):
    if backend == "osmesa" and shutil.which("ldconfig") is not None:
        libs = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        if "libOSMesa" in libs:
            pytest.skip("libOSMesa is installed here: OSMesa works")
    env = {"MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    if backend == "glfw":
        env["DISPLAY"] = ""
    doctor = planet("doctor", "--run-dir", str(tmp_path), "--render-frames", "5", env=env)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert "[FAIL] mujoco" in doctor.stdout and "unset MUJOCO_GL" in doctor.stdout, doctor.stdout
    assert "Traceback" not in doctor.stdout + doctor.stderr
    collect = planet(
        "collect", "--task", "cartpole-balance", "--preset", "debug", "--episodes", "1",
        "--run-dir", str(tmp_path / "run"), env=env,
    )  # fmt: skip
    assert_one_line_error(collect, f"MUJOCO_GL={backend}", fix)


@pytest.mark.usefixtures("precision_kept")
def test_doctor_names_another_python3_on_path(tmp_path):
    """The 'pip installed into another Python' trap: doctor says which interpreter runs planet
    and that the `python3` a user would type is a different one."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").symlink_to(shutil.which("true") or "/bin/true")
    env = {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    result = planet("doctor", "--run-dir", str(tmp_path), "--render-frames", "5", env=env)
    assert f"[ok  ] python   {sys.executable}" in result.stdout, result.stdout
    assert f"`python3` on PATH is {fake / 'python3'}" in result.stdout
    assert f"use {sys.executable} -m pip" in result.stdout
    assert "measured by this test" in result.stdout  # the kept entry was found: no probe ran


def test_inspect_bad_run_folders_are_one_line_errors(tmp_path):
    nowhere = planet_here("inspect", "--run-dir", str(tmp_path / "nowhere"))
    assert_one_line_error(nowhere, "nowhere")
    run = tmp_path / "collected"  # a run folder with episodes but no checkpoint
    collect = planet_here(
        "collect", "--task", "test-reach", "--preset", "debug", "--episodes", "1",
        "--run-dir", str(run),
    )  # fmt: skip
    assert collect.returncode == 0, collect.stderr
    no_checkpoint = planet_here("inspect", "--run-dir", str(run))
    assert_one_line_error(no_checkpoint, "no checkpoint", "train first")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs"
)
def test_disk_full_is_a_one_line_error_and_keeps_every_complete_episode(tmp_path):
    disk = tmp_path / "full"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(disk)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (container without the capability)")
    try:  # the cpu preset: the paper's episode length, fast frames (exact ones cost 3× the CPU)
        result = planet(
            "collect", "--task", "cartpole-balance", "--preset", "cpu", "--episodes", "6",
            "--run-dir", str(disk / "run"),
        )  # fmt: skip
        assert_one_line_error(result, "disk full while writing", "free some space")
        saved = sorted((disk / "run" / "train_episodes").iterdir())
        assert saved, "the episodes that fit are kept"
        assert all(p.name.endswith(".npz") and not p.name.startswith(".") for p in saved)
        import numpy as np

        for path in saved:  # every file left is a complete episode
            with np.load(path) as episode:
                assert episode["image"].shape == (126, 64, 64, 3)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_an_egl_device_this_machine_lacks_is_named_with_its_fix(monkeypatch):
    """MUJOCO_EGL_DEVICE_ID beyond the machine's GPUs: dm_control's own message, and the fix
    for it (not the EGL install line, which fits a missing library)."""
    from planet_torch.envs.headless import gl_errors
    from planet_torch.errors import UserError

    monkeypatch.setenv("MUJOCO_GL", "egl")
    message = "MUJOCO_EGL_DEVICE_ID must be an integer between 0 and 0 (inclusive), got 7."
    with pytest.raises(UserError) as error, gl_errors("importing dm_control"):
        raise RuntimeError(message)
    assert message in str(error.value) and "unset MUJOCO_EGL_DEVICE_ID" in str(error.value)
    assert "apt-get" not in str(error.value)
