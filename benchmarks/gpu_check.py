"""The CUDA paths of a baked project, on a machine with an NVIDIA GPU (no Docker needed).

    python benchmarks/gpu_check.py PROJECT_DIR

Trains on CUDA (bf16 autocast), trains under torchrun with NCCL, serves the checkpoint on the
GPU eager and through torch.compile (TORCH_COMPILE=1), and drives each server with tritonclient
(JSON and binary tensors), comparing every answer with the model's answer computed in-process.
Prints one line per step and a Markdown table of what it measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def run(*args: str, env: dict | None = None, cwd: Path) -> str:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    took = time.perf_counter() - started
    if done.returncode:
        sys.exit(
            f"FAILED ({took:.1f} s): {' '.join(args)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    print(f"ok ({took:.1f} s): {' '.join(args)}", flush=True)
    return done.stderr + done.stdout


def main() -> None:
    project = Path(sys.argv[1]).resolve()
    package = next(p.name for p in (project / "src").iterdir() if (p / "model.py").exists())
    sys.path[:0] = [str(project / "src"), str(project / "tests")]
    env = {"PYTHONPATH": f"{project / 'src'}:{project / 'tests'}"}
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
    rows = []

    log = run(sys.executable, "-m", package, "train", "--device", "cuda", "--epochs", "3",
              "--output", "/tmp/gpu.pt", env=env, cwd=project)  # fmt: skip
    rows.append(("train on CUDA, bf16", "bf16" in log, log.strip().splitlines()[-1][-80:]))
    log = run("torchrun", "--nproc-per-node", "1", "-m", package, "train", "--device", "cuda",
              "--epochs", "2", "--output", "/tmp/ddp.pt", env=env, cwd=project)  # fmt: skip
    rows.append(("torchrun, NCCL", "world size 1" in log, log.strip().splitlines()[-1][-80:]))

    from importlib import import_module

    import serving
    import tritonclient.http as triton

    model = import_module(f"{package}.model").MODEL
    for compiled in ("0", "1"):
        started = time.perf_counter()
        process, base = serving.start_server(Path("/tmp/gpu.pt"), TORCH_COMPILE=compiled)
        ready_s = time.perf_counter() - started
        status, _, body = serving.get(f"{base}/readyz")
        client = triton.InferenceServerClient(base.removeprefix("http://"))
        inputs = serving.random_inputs(64, seed=5)
        expected = serving.expected_outputs(Path("/tmp/gpu.pt"), inputs)
        worst = 0.0
        for binary in (False, True):
            infer_inputs = serving.triton_inputs(inputs, binary)
            result = client.infer(model.name, infer_inputs)
            for spec in model.outputs:
                got = torch.tensor(result.as_numpy(spec.name))
                if spec.floating:
                    worst = max(worst, (got - expected[spec.name]).abs().max().item())
                else:
                    assert (got == expected[spec.name]).float().mean() > 0.98, spec.name
        started = time.perf_counter()
        for _ in range(200):
            client.infer(model.name, infer_inputs)
        per_request_ms = (time.perf_counter() - started) / 200 * 1000
        client.close()
        serving.stop_server(process)
        label = "serve on CUDA, " + ("torch.compile" if compiled == "1" else "eager")
        on_gpu = status == 200 and b'"device":"cuda' in body
        as_asked = (b'"compiled":true' in body) == (compiled == "1")
        rows.append((label, on_gpu and as_asked,
                     f"ready in {ready_s:.1f} s; max |diff| vs CPU eager {worst:.2e}; "
                     f"64-row binary infer {per_request_ms:.1f} ms"))  # fmt: skip

    print("\n| step | ok | seen |\n| --- | --- | --- |")
    for step, ok, seen in rows:
        print(f"| {step} | {'yes' if ok else 'NO'} | {seen} |")


if __name__ == "__main__":
    main()
