"""launch.sh: the accelerate command it builds (--dry-run), GPU counting, multi-node arguments, paths."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT as REPO
LAUNCH = REPO / "launch.sh"


def _fake_tools(bin_dir: Path, gpus: int) -> None:
    """`nvidia-smi -L` listing `gpus` GPUs, and an `accelerate` that prints where and how it was started."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + "".join(f'echo "GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})"\n'
                                          for i in range(gpus)))
    fake_accelerate = bin_dir / "accelerate"
    fake_accelerate.write_text('#!/bin/sh\necho "cwd=$PWD"\necho "pythonpath=$PYTHONPATH"\necho "args=$*"\n')
    for tool in (smi, fake_accelerate):
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def _launch(args: list[str], cwd: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    full_env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", OMP_NUM_THREADS="1", **env)
    return subprocess.run(["bash", str(LAUNCH), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=120)


def _command(out: subprocess.CompletedProcess) -> list[str]:
    """The accelerate command launch.sh printed (`+ accelerate launch ...`)."""
    line = next(x for x in out.stderr.splitlines() if x.startswith("+ accelerate launch "))
    return shlex.split(line[2:])


def _arg(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_dry_run_multi_node_deepspeed_command(tmp_path):
    bin_dir, cwd = tmp_path / "bin", tmp_path / "elsewhere"
    _fake_tools(bin_dir, gpus=8)
    cwd.mkdir()
    config = os.path.relpath(REPO / "configs" / "vivid-5b.yaml", cwd)  # relative to the caller, not the repo
    out = _launch(["--config", config, "--num-machines", "2", "--machine-rank", "1", "--main-address", "10.0.0.1",
                   "--main-port", "29555", "--dry-run", "optim.gradient_accumulation_steps=2"], cwd, bin_dir)
    assert out.returncode == 0, out.stderr
    cmd = _command(out)
    assert cmd[:2] == ["accelerate", "launch"]
    assert _arg(cmd, "--config_file") == str(REPO / "configs" / "accelerate" / "zero2.yaml")
    assert _arg(cmd, "--num_processes") == "16" and _arg(cmd, "--num_machines") == "2"
    assert _arg(cmd, "--machine_rank") == "1" and _arg(cmd, "--main_process_ip") == "10.0.0.1"
    assert _arg(cmd, "--main_process_port") == "29555"
    assert _arg(cmd, "--deepspeed_multinode_launcher") == "standard"  # not pdsh, accelerate's default
    assert _arg(cmd, "--gradient_accumulation_steps") == "2" and _arg(cmd, "--gradient_clipping") == "1.0"
    assert _arg(cmd, "-m") == "train" and _arg(cmd, "--config") == str(REPO / "configs" / "vivid-5b.yaml")
    assert cmd[-1] == "optim.gradient_accumulation_steps=2"
    assert "cwd=" not in out.stdout  # --dry-run started nothing
    out = _launch(["--config", config, "--overwrite", "--dry-run"], cwd, bin_dir)
    assert out.returncode == 0 and "--overwrite" in _command(out), out.stderr  # passed on to the trainer


@pytest.mark.parametrize("visible, processes", [("0,3", "2"), ("GPU-1", "1"), ("1,-1,2", "1"), ("", None)])
def test_gpu_count_honours_cuda_visible_devices(tmp_path, visible, processes):
    bin_dir = tmp_path / "bin"
    _fake_tools(bin_dir, gpus=8)
    out = _launch(["--config", str(REPO / "configs" / "vivid-5b.yaml"), "--dry-run"], tmp_path, bin_dir,
                  CUDA_VISIBLE_DEVICES=visible)
    assert out.returncode == 0, out.stderr
    cmd = _command(out)
    if processes is None:  # every GPU hidden: one CPU process
        assert _arg(cmd, "--config_file").endswith("configs/accelerate/cpu.yaml") and _arg(cmd, "--num_processes") == "1"
    else:
        assert _arg(cmd, "--num_processes") == processes
        assert "--deepspeed_multinode_launcher" not in cmd  # one machine


def test_launch_runs_in_the_callers_directory_and_checks_arguments(tmp_path):
    """Relative paths in the config (output_dir, manifests) resolve against the caller's directory."""
    bin_dir, cwd = tmp_path / "bin", tmp_path / "work"
    _fake_tools(bin_dir, gpus=0)
    cwd.mkdir()
    (cwd / "my.yaml").write_text((REPO / "configs" / "tiny.yaml").read_text())
    out = _launch(["--config", "my.yaml", "checkpoint.output_dir=runs/x"], cwd, bin_dir)
    assert out.returncode == 0, out.stderr
    assert f"cwd={cwd}" in out.stdout.splitlines()
    assert out.stdout.splitlines()[1].startswith(f"pythonpath={REPO}")  # `-m train` found from anywhere
    assert f"--config {cwd / 'my.yaml'}" in out.stdout and "checkpoint.output_dir=runs/x" in out.stdout

    bad = _launch(["--config", "my.yaml", "--num-machines", "2", "--dry-run"], cwd, bin_dir)
    assert bad.returncode == 2 and "--main-address" in bad.stderr
    bad = _launch(["--config", "my.yaml", "--num-machines", "2", "--machine-rank", "2", "--main-address", "h",
                   "--dry-run"], cwd, bin_dir)
    assert bad.returncode == 2 and "--machine-rank" in bad.stderr
    bad = _launch(["--config", "nowhere.yaml", "--dry-run"], cwd, bin_dir)
    assert bad.returncode == 2 and "not found" in bad.stderr
    bad = _launch(["--config", "my.yaml", "--dry-run", "mixed_precision=fp8"], cwd, bin_dir)
    assert bad.returncode == 2 and "mixed_precision" in bad.stderr


def test_cpu_processes_run_deepspeed_on_the_cpu(tmp_path):
    """--cpu-processes N: N processes under the --zero DeepSpeed config, on DeepSpeed's CPU accelerator."""
    bin_dir = tmp_path / "bin"
    _fake_tools(bin_dir, gpus=0)
    tiny = str(REPO / "configs" / "tiny.yaml")
    out = _launch(["--config", tiny, "--cpu-processes", "2", "--zero", "zero3", "--main-port", "29601"], tmp_path,
                  bin_dir)
    assert out.returncode == 0, out.stderr
    cmd = _command(out)
    assert _arg(cmd, "--config_file") == str(REPO / "configs" / "accelerate" / "zero3.yaml")
    assert _arg(cmd, "--num_processes") == "2" and _arg(cmd, "--main_process_port") == "29601"
    assert _arg(cmd, "--mixed_precision") == "no"  # the training config's, not the accelerate config's bf16
    assert "DeepSpeed zero3 on DeepSpeed's CPU accelerator" in out.stderr
    for bad, message in [(["--cpu-processes", "0"], "positive integer"), (["--cpu-processes", "2", "--gpus", "1"],
                                                                           "not both")]:
        out = _launch(["--config", tiny, *bad, "--dry-run"], tmp_path, bin_dir)
        assert out.returncode == 2 and message in out.stderr, out.stderr
