"""GIA-MIC demo: emotion from a speech clip (or a talking-face video) and its transcript.

    python app.py                                   # $GIA_MIC_MODEL, else the embedded checkpoints/gia-mic-lite
    python app.py --model ORG/NAME@REV --host 127.0.0.1 --port 7860
    python app.py --model runs/tiny --asr-model none --max-seconds 20 --max-upload-mb 20

The app lives in ``gia_app/`` (UI only, over ``gia_mic.pipeline.EmotionRecognizer``); this file
is the entry point that ``python app.py``, ``make demo`` and a Hugging Face Space run. The page
is also an HTTP API (``/classify``, ``/timeline``) and an MCP server (``/gradio_api/mcp/``).
"""

from __future__ import annotations

import os
import sys

from gia_app import (
    DemoBackend,
    build_demo,
    build_parser,
    choose_model,
    create_demo,
    gpu,
    launch,
    main,
    markdown_text,
    space_model,
)

__all__ = ["DemoBackend", "build_demo", "build_parser", "choose_model", "create_demo", "gpu", "launch", "main", "markdown_text",
           "space_model"]

if __name__ == "__main__":
    sys.exit(main())
elif os.environ.get("SPACE_ID") and os.environ.get("GIA_MIC_NO_AUTOLOAD") != "1":
    demo = create_demo(build_parser().parse_args([]))  # a Space host that imports app.py and launches `demo`
