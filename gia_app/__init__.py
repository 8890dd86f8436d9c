"""The GIA-MIC Gradio app: a web page, an HTTP API and an MCP server over ``gia_mic``'s pipeline.

    python app.py                      # the embedded checkpoints/gia-mic-lite on 127.0.0.1:7860

Modules: ``backend`` (limits, session cache, pipeline calls), ``views`` (what the page says),
``ui`` (the page and its events), ``server`` (model choice, command line, ``launch``).
"""

from gia_app.backend import DemoBackend, file_digest, gpu
from gia_app.server import UploadJanitor, build_parser, choose_model, create_demo, launch, main, space_model
from gia_app.ui import build_demo
from gia_app.views import markdown_text

__all__ = ["DemoBackend", "UploadJanitor", "build_demo", "build_parser", "choose_model", "create_demo", "file_digest",
           "markdown_text",
           "gpu", "launch", "main", "space_model"]
