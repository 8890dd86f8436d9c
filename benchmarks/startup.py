"""Cold start: ``gia-mic predict CLIP --text T --json`` against ``python -c "import torch"``, side by side.

    python benchmarks/startup.py                                  # 5 rounds, embedded model, an example clip
    python benchmarks/startup.py --rounds 5 --app --json benchmarks/results/startup-cpu.json

Each round starts fresh processes, in turn: ``python -c pass``, ``python -c "import torch"``,
``python -c "import torch, transformers.modeling_utils"`` (the floor: every encoder class is a
transformers ``PreTrainedModel``), the real CLI (``gia-mic predict CLIP --text T --json``), the same
with one torch thread (``OMP_NUM_THREADS=1``) and a worker that runs the same CLI code
(``gia_mic.cli.main``) with a clock around each step: import torch, import transformers' modeling
code (which every encoder class needs), the rest of the imports, loading the model (header check,
processor, weights, model build, assignment) and the first prediction's stages. Rounds interleave
so that machine load hits every command alike; medians are reported with the load average before
and after (the machine is shared). A warm-up round is run first and not counted: every process
is cold, the page cache is warm.

``--app`` also times ``python app.py`` from its start to the first answer of ``/classify``
(``gradio_client``), and to the moment its server answers at all.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository root, for `benchmarks`

from benchmarks.measure import write_json  # noqa: E402

DEFAULT_CLIP = ROOT / "examples" / "1001_DFA_ANG_XX.mp4"
DEFAULT_TEXT = "Don't forget a jacket"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONWARNINGS": "ignore"}


# ---------------------------------------------------------------------------------------------- worker
def _timed(record: dict[str, float], key: str, fn: Any) -> Any:
    """``fn`` with its wall time added to ``record[key]`` (seconds) on every call."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record[key] = record.get(key, 0.0) + time.perf_counter() - start
    return wrapper


def worker(spawned: float, argv: list[str]) -> dict[str, Any]:
    """Runs ``gia_mic.cli.main(argv)`` in this fresh process with a clock around each step."""
    steps: dict[str, float] = {"interpreter start": time.time() - spawned}
    start = time.perf_counter()
    import torch  # noqa: F401

    steps["import torch"] = time.perf_counter() - start
    start = time.perf_counter()
    import transformers.modeling_utils  # noqa: F401  (every encoder class is a PreTrainedModel)

    steps["import transformers modeling"] = time.perf_counter() - start
    start = time.perf_counter()
    import gia_mic.checkpoint as checkpoint
    import gia_mic.cli as cli
    import gia_mic.pipeline as pipeline
    import gia_mic.processing as processing

    steps["import gia_mic (rest)"] = time.perf_counter() - start
    load: dict[str, float] = {}
    model_cls, processor_cls = pipeline.GiaMicForEmotionRecognition, processing.GiaMicProcessor
    model_cls.__init__ = _timed(load, "build model (meta + parameters on meta)", model_cls.__init__)
    processor_cls.from_pretrained = _timed(load, "processor", processor_cls.from_pretrained)
    for name, label in (("check_weights_header", "header check"), ("read_weights", "read + cast + check weights"),
                        ("load_strict", "assign weights")):
        setattr(checkpoint, name, _timed(load, label, getattr(checkpoint, name)))
    rec = pipeline.EmotionRecognizer
    rec.from_pretrained = _timed(steps, "load (EmotionRecognizer.from_pretrained)", rec.from_pretrained)
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = cli.main(argv)
    total = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"gia-mic {' '.join(argv)} exited {status}")
    steps["first prediction"] = total - steps["load (EmotionRecognizer.from_pretrained)"]
    result = json.loads(out.getvalue())
    return {"steps": steps, "load": load, "prediction_ms": result["timings_ms"], "label": result["label"]}


# ---------------------------------------------------------------------------------------------- runner
def _wall(cmd: list[str], **env: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**ENV, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def _cli_command() -> list[str]:
    script = Path(sys.executable).parent / "gia-mic"  # the installed console script, as a user runs it
    return [str(script)] if script.exists() else [sys.executable, "-m", "gia_mic.cli"]


FLOOR = "python -c 'import torch, transformers.modeling_utils'"
"""What any process that builds a transformers encoder imports before gia-mic's own work starts."""


def one_round(predict_argv: list[str]) -> dict[str, Any]:
    """Fresh processes, in turn: nothing, import torch, the import floor, the CLI (default threads, then one
    torch thread), the instrumented worker."""
    walls = {"python -c pass": _wall([sys.executable, "-c", "pass"]),
             "python -c 'import torch'": _wall([sys.executable, "-c", "import torch"]),
             FLOOR: _wall([sys.executable, "-c", "import torch, transformers.modeling_utils"]),
             "gia-mic predict --json": _wall(_cli_command() + predict_argv),
             "OMP_NUM_THREADS=1 gia-mic predict --json": _wall(_cli_command() + predict_argv, OMP_NUM_THREADS="1")}
    spawned, start = time.time(), time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(spawned), "--", *predict_argv],
                          check=True, cwd=ROOT, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    worker = json.loads(done.stdout.strip().splitlines()[-1])
    worker["steps"]["exit (wall - the steps above)"] = wall - sum(worker["steps"].values())
    return {"walls": walls, "worker": worker}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_first_answer(model: str, clip: Path, text: str, modalities: str, timeout: float = 600.0) -> dict[str, float]:
    """Seconds from starting ``python app.py`` to its server answering, and to the first ``/classify`` result."""
    from gradio_client import Client, handle_file  # imported before the clock starts

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--model", model, "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"app.py exited {proc.returncode}: {proc.stderr.read().decode()[-800:]}")
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"app.py did not answer within {timeout:.0f} s")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                time.sleep(0.05)
        up = time.perf_counter() - start
        result = Client(url, verbose=False).predict(handle_file(str(clip)), text, modalities, api_name="/classify")
        answered = time.perf_counter() - start
        assert result["label"], result
    finally:
        proc.terminate()  # the process this function started, by its handle
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"server answers, s": up, "first /classify answer, s": answered}


# ---------------------------------------------------------------------------------------------- report
def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of every wall time and worker step."""
    walls = {k: _median([r["walls"][k] for r in rounds]) for k in rounds[0]["walls"]}
    steps = {k: _median([r["worker"]["steps"][k] for r in rounds]) for k in rounds[0]["worker"]["steps"]}
    load = {k: _median([r["worker"]["load"].get(k, 0.0) for r in rounds]) for k in rounds[0]["worker"]["load"]}
    stages = {k: _median([r["worker"]["prediction_ms"].get(k, 0.0) for r in rounds])
              for k in rounds[0]["worker"]["prediction_ms"]}
    return {"walls_s": walls, "ratio_predict_to_import_torch": walls["gia-mic predict --json"] /
            walls["python -c 'import torch'"], "worker_steps_s": steps, "load_s": load, "first_prediction_ms": stages}


def print_report(report: dict[str, Any]) -> None:
    s = report["summary"]
    torch_s = s["walls_s"]["python -c 'import torch'"]
    m = report["machine"]
    print(f"\n{m['cpus']} CPUs, load average {m['loadavg_before'][0]:.2f} before / {m['loadavg_after'][0]:.2f} after; "
          f"median of {report['rounds']} rounds (cold processes, warm page cache)\n")
    print("| command | wall, s | x import torch |\n|---|---|---|")
    for name, wall in s["walls_s"].items():
        print(f"| `{name}` | {wall:.2f} | {wall / torch_s:.2f} |")
    print("\n| worker step (same CLI code, clocked) | s |\n|---|---|")
    for name, value in s["worker_steps_s"].items():
        print(f"| {name} | {value:.2f} |")
    for name, value in s["load_s"].items():
        print(f"| &nbsp;&nbsp; load: {name} | {value:.3f} |")
    for name, value in s["first_prediction_ms"].items():
        print(f"| &nbsp;&nbsp; first prediction: {name} | {value / 1000:.3f} |")
    for name, value in (report.get("app") or {}).items():
        print(f"| `python app.py`: {name} | {value:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "gia-mic-lite"))
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--app", action="store_true", help="also time python app.py to its first answer")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--worker", type=float, help=argparse.SUPPRESS)  # the parent's clock at spawn
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.rest)))
        return 0
    predict_argv = ["predict", str(args.clip), "--text", args.text, "--json", "--model", args.model]
    before = os.getloadavg()
    one_round(predict_argv)  # warm-up: page cache, .pyc files
    rounds = []
    for i in range(args.rounds):
        rounds.append(one_round(predict_argv))
        walls = rounds[-1]["walls"]
        print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in walls.items()), file=sys.stderr, flush=True)
    report: dict[str, Any] = {"model": os.path.relpath(args.model, ROOT), "clip": args.clip.name, "rounds": args.rounds,
                              "summary": summarise(rounds), "raw": rounds}
    if args.app:
        modalities = ",".join(json.loads((Path(args.model) / "config.json").read_text())["modalities"])
        app_first_answer(args.model, args.clip, args.text, modalities)  # warm-up
        report["app"] = app_first_answer(args.model, args.clip, args.text, modalities)
    report["machine"] = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                         "python": platform.python_version(), "loadavg_before": before, "loadavg_after": os.getloadavg()}
    print_report(report)
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
