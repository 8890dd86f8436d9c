"""Hostile inputs in one place: checkpoints that ask to run code, crashing or bombing media,
oversized configs, poisoned weights, path-escaping manifests, abusive app requests.

Each case failed on the code before the hardening change. Anything that could crash the
interpreter (native decoders) runs in a child process, so a crash fails a test instead of
killing pytest. Every error must be one line that names the file or field.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from tests.app_server import REPO_ROOT
from tests.clips import make_clip

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}


def run_cli(*args, stdin=subprocess.DEVNULL, timeout=300):
    return subprocess.run([sys.executable, "-m", "gia_mic.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout, stdin=stdin)


@pytest.fixture()
def cli(capsys):
    """In-process ``gia-mic`` for cases that cannot crash the interpreter: ``(exit code, stdout, stderr)``."""
    from gia_mic.cli import main

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    return lines[0]


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_config(ckpt: Path, **changes) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    (ckpt / "config.json").write_text(json.dumps(config))


def wav(path: Path, channels: int, seconds: float = 1.0, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * rate)) / rate
    data = np.stack([0.2 * np.sin(2 * np.pi * (220 + 40 * c) * t) for c in range(channels)], axis=1)
    sf.write(path, data.astype(np.float32), rate, subtype=subtype)
    return path


# ============================================================================================== security
PROCESSOR_FILES = {"tokenizer": "tokenizer_config.json", "feature_extractor": "preprocessor_config.json",
                   "image_processor": "preprocessor_config.json"}
MARKER = "gia_mic_remote_code_ran"


def plant_remote_code(ckpt: Path, folder: str, *, auto_map: bool = True, python: bool = True) -> Path:
    """Makes ``ckpt/folder`` ask transformers to run a module that leaves a marker file behind."""
    marker = ckpt.parent / MARKER
    target = ckpt / folder
    if python:
        (target / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                        "from transformers import PreTrainedTokenizerFast as Evil\n")
    if auto_map:
        config = json.loads((target / PROCESSOR_FILES[folder]).read_text())
        key = {"tokenizer": "AutoTokenizer", "feature_extractor": "AutoFeatureExtractor",
               "image_processor": "AutoImageProcessor"}[folder]
        config["auto_map"] = {key: ["evil.Evil", "evil.Evil"] if folder == "tokenizer" else "evil.Evil"}
        (target / PROCESSOR_FILES[folder]).write_text(json.dumps(config))
    return marker


@pytest.mark.parametrize("folder", sorted(PROCESSOR_FILES))
@pytest.mark.parametrize(("auto_map", "python"), [(True, True), (True, False), (False, True)])
def test_checkpoint_asking_to_run_code_is_refused(tiny_checkpoint, tmp_path, folder, auto_map, python):
    from gia_mic import GiaMicForEmotionRecognition
    from gia_mic.errors import EncoderLoadError

    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    marker = plant_remote_code(ckpt, folder, auto_map=auto_map, python=python)
    with pytest.raises(EncoderLoadError) as info:
        GiaMicForEmotionRecognition.from_pretrained(ckpt)
    message = one_line(str(info.value))
    assert folder in message and ("auto_map" in message or "evil.py" in message)
    assert not marker.exists()


def test_cli_never_prompts_for_remote_code(tiny_checkpoint, tmp_path):
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    marker = plant_remote_code(ckpt, "tokenizer")
    clip = make_clip(tmp_path / "c.wav", seconds=1.0)
    proc = subprocess.run(  # a "yes" waits on stdin, as a user answering transformers' prompt would
        [sys.executable, "-m", "gia_mic.cli", "predict", str(clip), "--model", str(ckpt), "--asr-model", "none"],
        input="y\ny\n", capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "ckpt/tokenizer" in line and "never runs code" in line and "[y/N]" not in proc.stdout + proc.stderr
    assert not marker.exists()


def test_encoder_config_asking_for_code_is_refused(tiny_checkpoint, tmp_path):
    from gia_mic.errors import ConfigError

    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    edit_config(ckpt, encoder_configs__text__auto_map={"AutoModel": "other/repo--evil.Evil"})
    from gia_mic import GiaMicForEmotionRecognition

    with pytest.raises(ConfigError, match=r"encoder_configs\.text\.auto_map"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def test_manifest_rows_outside_the_root_are_refused_per_row(cli, tiny_checkpoint, tmp_path):
    root = tmp_path / "root"
    make_clip(root / "ok.wav", seconds=1.0)
    outside = make_clip(tmp_path / "secret.wav", seconds=1.0)
    (root / "link.wav").symlink_to(outside)
    manifest = root / "m.csv"
    manifest.write_text("path,label,transcript\nok.wav,happy,hi\n../../etc/passwd,sad,x\n"
                        f"{outside},sad,x\nlink.wav,sad,x\n")
    code, stdout, _ = cli("evaluate", "--model", tiny_checkpoint, "--manifest", manifest, "--json", "--quiet",
                          "--asr-model", "none", "--no-isolation")
    out = json.loads(stdout)
    assert code == 1 and out["n"] == 1
    assert [e.split(":")[0] for e in out["errors"]] == ["line 3", "line 4", "line 5"]
    assert all("outside the root" in e for e in out["errors"])
    _, stdout, _ = cli("evaluate", "--model", tiny_checkpoint, "--manifest", manifest, "--json", "--quiet",
                       "--asr-model", "none", "--no-isolation", "--allow-outside-root")
    out = json.loads(stdout)
    assert out["n"] == 3 and not any("outside the root" in e for e in out["errors"])  # /etc/passwd: not media


# ============================================================================================== crashes
def test_decoding_1_to_16_channels_in_a_child_process(tmp_path):
    files = [wav(tmp_path / f"ch{n}.wav", n) for n in range(1, 17)]
    files += [wav(tmp_path / f"ch{n}f.wav", n, rate=44100, subtype="FLOAT") for n in (8, 9, 16)]
    code = textwrap.dedent("""
        import sys
        from gia_mic.media import decode_clip
        for name in sys.argv[1:]:
            clip = decode_clip(name, sample_rate=16000)
            print(name, clip.audio.shape[0], float(abs(clip.audio).max()))
    """)
    proc = subprocess.run([sys.executable, "-c", code, *map(str, files)], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, f"decoder died with {proc.returncode}: {proc.stderr[-500:]}"
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert len(rows) == len(files)
    for _, samples, peak in rows:
        assert abs(int(samples) - 16000) <= 16 and 0.0 < float(peak) <= 1.0


def test_down_mix_is_the_channel_mean(tmp_path):
    from gia_mic.media import decode_clip

    rate, n = 16000, 12
    t = np.arange(rate) / rate
    data = np.stack([0.05 * np.sin(2 * np.pi * (200 + 50 * c) * t) for c in range(n)], axis=1).astype(np.float32)
    sf.write(tmp_path / "a.wav", data, rate, subtype="FLOAT")
    audio = decode_clip(tmp_path / "a.wav").audio
    np.testing.assert_allclose(audio, data.mean(axis=1), atol=1e-6)


def test_eight_channel_predict_and_evaluate(cli, tiny_checkpoint, tmp_path):
    eight = wav(tmp_path / "eight.wav", 8)
    out = run_cli("predict", eight, "--model", tiny_checkpoint, "--asr-model", "none", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["modalities_used"] == ["audio"]
    (tmp_path / "m.csv").write_text("path,label,transcript\neight.wav,happy,hi\n")
    code, stdout, _ = cli("evaluate", "--model", tiny_checkpoint, "--manifest", tmp_path / "m.csv", "--json",
                          "--quiet", "--asr-model", "none")  # decoded in the isolated worker
    assert code == 0 and json.loads(stdout)["n"] == 1


@pytest.fixture()
def isolated(request):
    from gia_mic.isolation import IsolatedDecoder, Limits

    decoders = []

    def make(target=None, **limits):
        decoder = IsolatedDecoder(Limits(**{"memory_mb": 512, "cpu_seconds": 2, "wall_seconds": 60, **limits}),
                                  target=target)
        decoders.append(decoder)
        return decoder

    yield make
    for decoder in decoders:
        decoder.close()


@pytest.mark.parametrize(("target", "limits", "expected"), [
    ("tests.crashers:segfault", {}, "crashed the media decoder (SIGSEGV)"),
    ("tests.crashers:hang", {"wall_seconds": 2}, "took longer than 2 s"),
    ("tests.crashers:spin", {"cpu_seconds": 1}, "more than 1 s of CPU"),
    ("tests.crashers:memory_bomb", {}, "more than 512 MB of memory"),
])
def test_isolated_decoder_turns_crashes_into_errors(isolated, tmp_path, target, limits, expected):
    from gia_mic.errors import MediaError

    decoder = isolated(target, **limits)
    with pytest.raises(MediaError) as info:
        decoder(tmp_path / "x.mp4")
    assert expected in one_line(str(info.value)) and "x.mp4" in str(info.value)


def test_isolated_decoder_matches_in_process_decoding_and_recovers(isolated, tmp_path):
    from gia_mic.errors import MediaError
    from gia_mic.media import decode_clip

    clip = make_clip(tmp_path / "c.mp4", seconds=1.0)
    decoder = isolated("tests.crashers:crash_on_name")
    with pytest.raises(MediaError, match="SIGSEGV"):
        decoder(make_clip(tmp_path / "crash.mp4", seconds=1.0))
    got, want = decoder(clip, num_frames=4), decode_clip(clip, num_frames=4)
    np.testing.assert_array_equal(got.frames, want.frames)
    np.testing.assert_array_equal(got.audio, want.audio)
    assert (got.duration, got.truncated, got.missing) == (want.duration, want.truncated, want.missing)
    with pytest.raises(MediaError, match="file not found"):
        decoder(tmp_path / "missing.mp4")


def test_evaluate_survives_a_crashing_file(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import gia_mic.isolation
    from gia_mic.cli import main

    monkeypatch.setattr(gia_mic.isolation, "DEFAULT_TARGET", "tests.crashers:crash_on_name")
    make_clip(tmp_path / "a.mp4", seconds=1.0)
    make_clip(tmp_path / "crash.mp4", seconds=1.0)
    make_clip(tmp_path / "b.mp4", seconds=1.0)
    (tmp_path / "m.csv").write_text("path,label,transcript\na.mp4,happy,x\ncrash.mp4,sad,x\nb.mp4,angry,x\n")
    code = main(["evaluate", "--model", str(tiny_checkpoint), "--manifest", str(tmp_path / "m.csv"), "--json",
                 "--quiet", "--asr-model", "none", "--batch-size", "2"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["n"] == 2
    assert len(out["errors"]) == 1 and out["errors"][0].startswith("line 3") and "crashed" in out["errors"][0]


# ============================================================================================== config and weights
BOMBS = [
    ("hidden_size", 16384, "hidden_size"),
    ("hidden_size", 10**9, "hidden_size"),
    ("sample_rate", 10**9, "sample_rate"),
    ("num_frames", 10**6, "num_frames"),
    ("max_text_tokens", 10**6, "max_text_tokens"),
    ("max_audio_seconds", 1e9, "max_audio_seconds"),
    ("encoder_configs__text__vocab_size", 10**10, "encoder_configs.text.vocab_size"),
    ("encoder_configs__audio__hidden_size", 10**9, "encoder_configs.audio.hidden_size"),
    ("encoder_configs__video__image_size", 10**6, "encoder_configs.video.image_size"),
    ("encoder_configs__text__num_hidden_layers", 10**5, "encoder_configs.text.num_hidden_layers"),
    ("encoder_configs__audio__model_type", "my-own-model", "encoder_configs.audio.model_type"),
]


def test_oversized_configs_are_refused_before_allocating(tiny_checkpoint, tmp_path):
    cases = []
    for i, (field, value, named) in enumerate(BOMBS):
        ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / f"ckpt{i}")
        edit_config(ckpt, **{field: value})
        cases.append((str(ckpt), named))
    code = textwrap.dedent("""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # an attempt to allocate shows as MemoryError
        from gia_mic.errors import USER_ERRORS
        from gia_mic import GiaMicForEmotionRecognition
        for ckpt, named in json.loads(sys.argv[1]):
            try:
                GiaMicForEmotionRecognition.from_pretrained(ckpt)
                print(json.dumps([named, "LOADED"]))
            except USER_ERRORS as err:
                print(json.dumps([named, str(err)]))
    """)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [named for named, _ in results] == [named for _, _, named in BOMBS]
    for named, message in results:
        assert named in one_line(message), (named, message)


def test_combined_sizes_within_bounds_are_refused_by_the_header_check(tiny_checkpoint, tmp_path):
    from gia_mic import GiaMicForEmotionRecognition
    from gia_mic.errors import CheckpointError

    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    edit_config(ckpt, hidden_size=4096, num_heads=64, ffn_multiplier=16)  # each field legal, the file is tiny
    with pytest.raises(CheckpointError, match="shape mismatches"):
        GiaMicForEmotionRecognition.from_pretrained(ckpt)


def rewrite_weights(ckpt: Path, change) -> None:
    state = load_file(str(ckpt / "model.safetensors"))
    change(state)
    save_file(state, str(ckpt / "model.safetensors"))


@pytest.mark.parametrize(("kind", "message"), [
    ("int64", "stored as other types"), ("bool", "stored as other types"), ("nan", "NaN or Inf"),
    ("inf", "NaN or Inf"), ("bad_scale", "int8 scale"),
])
def test_poisoned_weights_are_refused(tiny_checkpoint, tmp_path, kind, message):
    from gia_mic import GiaMicForEmotionRecognition
    from gia_mic.errors import CheckpointError
    from gia_mic.quantize import SCALE_SUFFIX

    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    key = "classifier.0.weight"

    def change(state):
        if kind in ("int64", "bool"):
            state[key] = state[key].to(getattr(torch, kind))
        elif kind in ("nan", "inf"):
            state[key][0, 0] = float(kind)
        else:
            state[key] = torch.zeros_like(state[key], dtype=torch.int8)
            state[key + SCALE_SUFFIX] = torch.ones(3)

    rewrite_weights(ckpt, change)
    with pytest.raises(CheckpointError) as info:
        GiaMicForEmotionRecognition.from_pretrained(ckpt)
    assert message in one_line(str(info.value)) and key in str(info.value)


def test_non_finite_audio_samples_are_cleaned_and_output_is_strict_json(cli, tiny_checkpoint, tmp_path, caplog):
    rate = 16000
    data = (0.1 * np.sin(np.arange(rate) / 5.0)).astype(np.float32)
    data[100:200] = np.nan
    data[300] = np.inf
    sf.write(tmp_path / "nan.wav", data, rate, subtype="FLOAT")
    code, stdout, err = cli("predict", tmp_path / "nan.wav", "--model", tiny_checkpoint, "--asr-model", "none",
                            "--json")
    assert code == 0, err
    result = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert all(np.isfinite(s["score"]) for s in result["scores"])
    assert "101 non-finite audio samples" in caplog.text


def test_non_finite_waveform_array_is_refused(tiny_checkpoint):
    from gia_mic.errors import MediaError
    from gia_mic.pipeline import EmotionRecognizer

    rec = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")
    wave = np.zeros(16000, np.float32)
    wave[5] = np.nan
    with pytest.raises(MediaError, match="NaN or infinite"):
        rec(audio=(wave, 16000))


# ============================================================================================== CLI errors and exit codes
def test_evaluate_with_nothing_scored_exits_2_with_valid_json(cli, tiny_checkpoint, tmp_path):
    rows = "".join(f"missing{i}.wav,happy,x\n" for i in range(300))
    for name, body in (("missing.csv", "path,label,transcript\n" + rows), ("header.csv", "path,label,transcript\n")):
        (tmp_path / name).write_text(body)
        code, stdout, err = cli("evaluate", "--model", tiny_checkpoint, "--manifest", tmp_path / name, "--json",
                                "--quiet", "--asr-model", "none", "--no-isolation")
        out = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
        assert code == 2 and out["n"] == 0 and out["wa"] is None and out["ua"] is None
        assert "nothing could be scored" in one_line(err)


@pytest.mark.parametrize(("args", "message"), [
    (["--manifest", "{tmp}"], "is a directory"),
    (["--manifest", "{tmp}/m.csv", "--batch-size", "0"], "must be at least 1"),
    (["--manifest", "{tmp}/m.csv", "--batch-size", "-3"], "must be at least 1"),
])
def test_evaluate_argument_errors_are_one_line(cli, tiny_checkpoint, tmp_path, args, message):
    (tmp_path / "m.csv").write_text("path,label,transcript\n")
    code, _, err = cli("evaluate", "--model", tiny_checkpoint, *[a.format(tmp=tmp_path) for a in args], "--quiet")
    assert code == 2 and message in err and "Traceback" not in err


def test_manifest_with_bom_and_a_latin1_row(cli, tiny_checkpoint, tmp_path):
    make_clip(tmp_path / "a.wav", seconds=1.0)
    make_clip(tmp_path / "b.wav", seconds=1.0)
    body = "path,label,transcript\r\na.wav,happy,caf\u00e9\r\n".encode() + b"b.wav,sad,caf\xe9\r\n"
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbf" + body)
    _, stdout, _ = cli("evaluate", "--model", tiny_checkpoint, "--manifest", tmp_path / "m.csv", "--json", "--quiet",
                       "--asr-model", "none", "--no-isolation")
    out = json.loads(stdout)
    assert out["n"] == 1 and out["errors"] == ["line 3: not valid UTF-8 (re-save the manifest as UTF-8)"]


def test_long_video_with_short_audio_is_truncated_and_refused_by_the_app(tiny_checkpoint, tmp_path):
    from gia_mic.errors import InputError
    from gia_mic.media import decode_clip
    from tests.app_server import load_app, tiny_recognizer

    clip = decode_clip(make_clip(tmp_path / "long.mp4", seconds=400, fps=1, audio_seconds=5), max_seconds=8.0)
    assert clip.truncated and clip.audio.shape[0] <= 5.1 * 16000
    backend = load_app().DemoBackend(tiny_recognizer(tiny_checkpoint), max_seconds=8.0)
    with pytest.raises(InputError, match="more than"):
        backend.check_length(clip)


def test_video_without_audio_says_why_text_is_missing(tmp_path):
    from gia_mic.pipeline import EmotionRecognizer

    class Stub:
        def transcribe(self, waveform):  # pragma: no cover - must not be called
            raise AssertionError("ASR ran without audio")

    from tests.conftest import build_tiny

    rec = EmotionRecognizer(build_tiny(), transcriber=Stub(), device="cpu")
    pred = rec(video=make_clip(tmp_path / "mute.mp4", seconds=1.0, audio=False))
    assert pred.missing["text"] == "no speech to transcribe (the video file has no audio track)"


def test_dash_file_names(cli, tiny_checkpoint, tmp_path):
    clip = make_clip(tmp_path / "-clip.wav", seconds=1.0)
    code, stdout, err = cli("predict", "--model", tiny_checkpoint, "--asr-model", "none", "--json", "--", clip)
    assert code == 0 and json.loads(stdout)["modalities_used"] == ["audio"], err
    code, _, err = cli("predict", "--model", tiny_checkpoint, clip.name)
    assert code == 2 and "starting with '-' goes after '--'" in err


# ============================================================================================== the app
gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def app_server(tiny_checkpoint):
    from tests.app_server import serve, tiny_recognizer

    recognizer = tiny_recognizer(tiny_checkpoint)
    with serve(recognizer) as (demo, url):
        yield demo, url, recognizer


def classify(url, path, text, modalities):
    client = gradio_client.Client(url, verbose=False)
    file = gradio_client.handle_file(str(path)) if path is not None else None
    return client.predict(file, text, modalities, api_name="/classify")


@pytest.mark.parametrize("modalities", [123, {"a": 1}, [1, 2], ["audio", None]])
def test_app_refuses_odd_modalities_as_input_problems(app_server, tmp_path, modalities):
    _, url, _ = app_server
    clip = make_clip(tmp_path / "c.wav", seconds=1.0)
    # the API's modalities are text (a valid MCP schema): odd values arrive as their text and are unknown names
    with pytest.raises(gradio_client.exceptions.AppError, match="modalities must be a list of names|unknown modality"):
        classify(url, clip, "hello", modalities)
    assert classify(url, clip, "hello", "audio")["modalities_used"] == ["audio"]


def test_app_user_mistakes_log_one_line(app_server, tmp_path, caplog, capfd):
    import logging

    _, url, _ = app_server
    (tmp_path / "bad.mp4").write_text("not a video")
    with caplog.at_level(logging.INFO, logger="gia_mic.app"):
        with pytest.raises(gradio_client.exceptions.AppError):
            classify(url, tmp_path / "bad.mp4", "hello", "audio")
    logged = [r for r in caplog.records if r.name == "gia_mic.app"]
    assert len(logged) == 1 and logged[0].getMessage().startswith("input problem:") and not logged[0].exc_info
    assert "Traceback" not in capfd.readouterr().err


def test_app_shows_the_transcript_literally():
    from tests.app_server import load_app

    app = load_app()
    shown = app.markdown_text("*not bold* [link](http://x) <b>html</b> # heading")
    assert "\\*not bold\\*" in shown and "\\[link\\]" in shown and "\\<b\\>" in shown and "\\#" in shown


def test_app_survives_an_eight_channel_upload_and_a_crashing_decoder(app_server, tmp_path):
    from gia_mic.isolation import IsolatedDecoder

    _, url, recognizer = app_server
    assert classify(url, wav(tmp_path / "eight.wav", 8), "hi", "audio")["modalities_used"] == ["audio"]
    recognizer.decoder = IsolatedDecoder(target="tests.crashers:crash_on_name")
    try:
        with pytest.raises(gradio_client.exceptions.AppError, match="crashed the media decoder"):
            classify(url, make_clip(tmp_path / "crash.wav", seconds=1.0), "hi", "audio")
        assert classify(url, make_clip(tmp_path / "fine.wav", seconds=1.0), "hi", "audio")["label"]
    finally:
        recognizer.decoder.close()
        recognizer.decoder = None


def test_app_decodes_uploads_in_an_isolated_worker(tiny_checkpoint):
    from tests.app_server import load_app

    app = load_app()
    args = app.build_parser().parse_args(["--model", str(tiny_checkpoint), "--asr-model", "none"])
    recognizer = app.create_demo(args).gia_mic_backend.recognizer
    assert recognizer.decoder is not None
    recognizer.decoder.close()


def test_uploads_are_bounded_and_deleted_at_shutdown(tiny_checkpoint):
    import httpx

    from tests.app_server import load_app, tiny_recognizer

    app = load_app()
    demo = app.build_demo(tiny_recognizer(tiny_checkpoint))
    _, url, _ = app.launch(demo, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True,
                           max_stored_mb=1.5)
    try:
        stored = []
        for i in range(3):
            body = bytes([i]) * (700 * 1024)
            reply = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": (f"u{i}.bin", body)}, timeout=60)
            assert reply.status_code == 200, reply.text
            stored += reply.json()
        assert all(Path(p).exists() for p in stored)
        freed = demo.gia_mic_janitor.sweep()
        assert freed >= 700 * 1024 and not Path(stored[0]).exists() and Path(stored[2]).exists()
    finally:
        demo.gia_mic_janitor.stop()
        demo.close()
    assert not any(Path(p).exists() for p in stored)


# ============================================================================================== decoder fuzz
FUZZ = textwrap.dedent("""
    import sys, numpy as np
    from pathlib import Path
    from gia_mic.errors import MediaError
    from gia_mic.media import decode_clip
    out = Path(sys.argv[1]); sources = [Path(p).read_bytes() for p in sys.argv[2:]]
    rng = np.random.default_rng(1234)
    for case in range(60):
        data = sources[case % len(sources)]
        kind = case % 3
        if kind == 0:
            blob = rng.integers(0, 256, int(rng.integers(1, 20000)), dtype=np.uint8).tobytes()
        elif kind == 1:
            blob = data[: int(rng.integers(1, len(data)))]
        else:
            arr = bytearray(data)
            for pos in rng.integers(0, len(arr), 20):
                arr[pos] ^= 1 << int(rng.integers(0, 8))
            blob = bytes(arr)
        path = out / f"case{case}.mp4"
        path.write_bytes(blob)
        print(f"case {case} kind {kind}", flush=True)
        try:
            decode_clip(path, max_seconds=8.0)
        except MediaError:
            pass
    print("done")
""")


def test_decoder_fuzz_never_crashes_or_leaks_other_errors(tmp_path):
    sources = sorted((REPO_ROOT / "examples").glob("*.mp4"))[:3] or [make_clip(tmp_path / "s.mp4", seconds=2.0)]
    proc = subprocess.run([sys.executable, "-c", FUZZ, str(tmp_path), *map(str, sources)], capture_output=True,
                          text=True, env=ENV, timeout=600)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no case ran"
    assert proc.returncode == 0 and last == "done", f"exit {proc.returncode} at {last}: {proc.stderr[-800:]}"


def test_timeline_of_an_untrusted_file_is_decoded_in_the_sandbox(tiny_checkpoint, tmp_path):
    from gia_mic.errors import MediaError
    from gia_mic.isolation import IsolatedDecoder
    from gia_mic.pipeline import EmotionRecognizer
    from tests.clips import speech_like

    rate = 16000
    wave = np.concatenate([speech_like(3.0, rate=rate), np.zeros(2 * rate), speech_like(2.5, rate=rate, f0=180.0)])
    sf.write(tmp_path / "talk.wav", wave.astype(np.float32), rate)
    plain = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")
    boxed = EmotionRecognizer.from_pretrained(tiny_checkpoint, asr_model=None, device="cpu")
    boxed.decoder = IsolatedDecoder(target="tests.crashers:crash_on_name",
                                    stream_target="tests.crashers:stream_crash_on_name")
    try:
        want, got = plain.timeline(tmp_path / "talk.wav"), boxed.timeline(tmp_path / "talk.wav")
        assert got.source == str(tmp_path / "talk.wav") and got.duration == pytest.approx(want.duration)
        assert [(s.start, s.end, s.label) for s in got.segments] == [(s.start, s.end, s.label) for s in want.segments]
        assert got.segments, "the generated speech should give segments"
        shutil.copy(tmp_path / "talk.wav", tmp_path / "crash.wav")
        with pytest.raises(MediaError, match="crashed the media decoder"):
            boxed.timeline(tmp_path / "crash.wav")
    finally:
        boxed.decoder.close()
