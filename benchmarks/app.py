"""Load test of the Gradio app: concurrent gradio_client clients calling ``/classify``.

    python benchmarks/app.py                                   # tiny random checkpoint, 16 clients x 4 requests
    python benchmarks/app.py --json benchmarks/results/app-cpu.json
    python benchmarks/app.py --url http://127.0.0.1:7860/ --clip examples/1001_DFA_HAP_XX.mp4

Without ``--url`` it builds a tiny random checkpoint, serves the app in-process on
127.0.0.1 (ASR off, default queue settings) and loads it. Every request must succeed;
the exit status is 1 otherwise. Latency is per request, as a client sees it (upload,
queue wait, decode, encoders, fusion, download).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measure import write_json  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_CLIP = ROOT / "examples" / "1001_DFA_HAP_XX.mp4"
TRANSCRIPT = "Don't forget a jacket"


def run_load(url: str, clip: Path, *, clients: int = 16, requests: int = 4, text: str = TRANSCRIPT) -> dict[str, Any]:
    """``clients`` threads, each with its own ``gradio_client.Client``, send ``requests`` calls each."""
    from gradio_client import Client, handle_file

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def worker() -> None:
        client = Client(url, verbose=False)
        barrier.wait()
        for _ in range(requests):
            start = time.perf_counter()
            try:
                result = client.predict(handle_file(str(clip)), text, "video,audio,text", api_name="/classify")
                assert result["label"], result
            except Exception as err:  # every failure is counted, none stops the run
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")
                continue
            with lock:
                latencies.append((time.perf_counter() - start) * 1000.0)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) if latencies else np.zeros(1)
    return {"clients": clients, "requests_per_client": requests, "ok": len(latencies), "errors": errors,
            "wall_s": round(wall, 3), "throughput_rps": round(len(latencies) / wall, 3),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "max_ms": round(float(ms.max()), 1)}


def _serve_tiny(concurrency: int, queue_size: int):
    """Launches the app on a tiny random checkpoint; returns ``(demo, url)``."""
    from tests.app_server import load_app, tiny_recognizer
    from tests.conftest import build_tiny

    folder = Path(tempfile.mkdtemp(prefix="gia-mic-bench-")) / "tiny"
    build_tiny().save_pretrained(folder)
    app = load_app()
    demo = app.build_demo(tiny_recognizer(folder), concurrency=concurrency, queue_size=queue_size)
    _, url, _ = app.launch(demo, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
    return demo, url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running app (default: serve a tiny checkpoint in-process)")
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="clip to send (default: a CREMA-D example)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=4, help="requests per client")
    p.add_argument("--concurrency", type=int, default=2, help="app's default_concurrency_limit (in-process only)")
    p.add_argument("--queue-size", type=int, default=32, help="app's queue max_size (in-process only)")
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args(argv)
    clip = args.clip
    if not clip.exists():
        from tests.clips import make_clip

        clip = make_clip(Path(tempfile.mkdtemp(prefix="gia-mic-bench-")) / "clip.mp4", seconds=2.0, size=(160, 120))
    demo = None
    url = args.url
    if url is None:
        demo, url = _serve_tiny(args.concurrency, args.queue_size)
    try:
        report = run_load(url, clip, clients=args.clients, requests=args.requests)
    finally:
        if demo is not None:
            demo.close()
    import torch

    report.update(clip=clip.name, model="tiny random (in-process)" if args.url is None else url,
                  concurrency=args.concurrency if args.url is None else None, device="cpu",
                  cpus=os.cpu_count(), torch_threads=torch.get_num_threads(), python=platform.python_version())
    print(f"{report['ok']}/{args.clients * args.requests} ok, {len(report['errors'])} errors; "
          f"p50 {report['p50_ms']:.0f} ms, p95 {report['p95_ms']:.0f} ms, {report['throughput_rps']:.2f} req/s")
    for err in report["errors"][:5]:
        print(f"  error: {err}")
    if args.json:
        write_json(args.json, report)
    return 0 if not report["errors"] and report["ok"] == args.clients * args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
