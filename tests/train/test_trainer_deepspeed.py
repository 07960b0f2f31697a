"""DeepSpeed ZeRO-2 and ZeRO-3 for real, on the CPU: `./launch.sh --cpu-processes 2` (DeepSpeed's CPU accelerator,
gloo), killed with SIGKILL mid-run, resumed with `--resume latest`, then exported. Slow (minutes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.train.test_trainer import REPO, TINY_YAML, read_metrics, synth_data, tiny_overrides  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow]
deepspeed = pytest.importorskip("deepspeed")

STEPS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false",
                OMP_NUM_THREADS="1")


def _launch(zero: str, data: Path, run: Path, *extra: str) -> list[str]:
    return ["bash", str(REPO / "launch.sh"), "--config", str(TINY_YAML), "--cpu-processes", "2", "--zero", zero,
            "--main-port", str(_free_port()), *extra,
            *tiny_overrides(data, run, f"optim.max_steps={STEPS}", "checkpoint.every_n_steps=2",
                            "checkpoint.keep_last=2")]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def _run_pids(run: Path) -> list[int]:
    """Every process whose command line names the run folder: launch.sh, accelerate, and both ranks (torchrun
    starts each rank in a session of its own, so killing the launcher's process group alone orphans them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"checkpoint.output_dir={run}" in cmdline:
                pids.append(int(entry.name))
    return pids


def _kill_run(proc: subprocess.Popen, run: Path) -> None:
    """SIGKILL every process of the run at once, as a crash or a job scheduler's kill of the job would."""
    pids = _run_pids(run)
    assert len(pids) >= 3, pids  # the launcher and two ranks at least
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.time() + 60
    while _run_pids(run):
        assert time.time() < deadline, "processes of the killed run are still alive"
        time.sleep(0.2)


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_on_cpu_sigkill_resume_latest_and_export(zero, synth_data, tmp_path):
    from safetensors.torch import load_file

    from vivid.pipeline import VIVIDPipeline

    full, killed = tmp_path / "full", tmp_path / "killed"
    out = _run(_launch(zero, synth_data, full))
    assert f"DeepSpeed {zero} on DeepSpeed's CPU accelerator" in out.stderr
    assert "using torch.distributed" not in out.stderr  # accelerate and torch.distributed agree: 2 processes
    assert "DeepSpeed (ZeRO stage" not in out.stderr  # not the "DeepSpeed is ignored" warning: it ran
    engine_files = {p.name for p in (full / "checkpoints" / f"checkpoint-{STEPS}" / "pytorch_model").iterdir()}
    assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= engine_files  # 2 ZeRO partitions

    proc = subprocess.Popen(_launch(zero, synth_data, killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 900
    while not (killed / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file():
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    _kill_run(proc, killed)
    done = [r["step"] for r in read_metrics(killed)]
    assert done and max(done) < STEPS

    _run(_launch(zero, synth_data, killed, "--resume", "latest"))
    expected, resumed = read_metrics(full), read_metrics(killed)
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    for a, b in zip(expected, resumed):
        assert abs(a["loss"] - b["loss"]) <= 1e-6, (a["step"], a["loss"], b["loss"])
        assert a["lr"] == b["lr"]

    from vivid.cli import main

    assert main(["export", "--checkpoint", str(killed), "--out", str(tmp_path / "export")]) == 0
    exported = load_file(tmp_path / "export" / "pytorch_lora_weights.safetensors")
    straight = load_file(full / "checkpoints" / f"checkpoint-{STEPS}" / "vivid-weights" /
                         "pytorch_lora_weights.safetensors")
    assert set(exported) == set(straight)
    for key, value in exported.items():  # the resumed run ends where the uninterrupted one does
        assert (value - straight[key]).abs().max() <= 1e-6, key
    json.loads((tmp_path / "export" / "vivid_config.json").read_text())
    VIVIDPipeline.from_vivid(tmp_path / "export", base_model=str(killed / "tiny-model"))
