# The front door: every routine command is a target here, and CI calls `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run test crashtest demo bench lint fmt clean screenshot image imagetest bench-images

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "imgsvc needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)  ## create .venv with the service and its development tools

run: $(INSTALLED)  ## serve on 127.0.0.1:8000 (IMGSVC_* variables configure it)
	$(BIN)/imgsvc serve

test: $(INSTALLED)  ## every test (installs the programs they start when missing: see scripts/test-deps.sh)
	scripts/test-deps.sh
	$(BIN)/pytest

crashtest: $(INSTALLED)  ## the kill -9 loops, one process and three, long: CRASH_ROUNDS rounds (default 200)
	IMGSVC_CRASH_ROUNDS=$${CRASH_ROUNDS:-200} $(BIN)/pytest -s tests/e2e/test_crash.py tests/e2e/test_crash_many.py

demo: $(INSTALLED)  ## offline: a sample image host, the service, an upload with curl, the results
	scripts/demo.sh

bench: $(INSTALLED)  ## the benchmark: the service against the machine's ceiling, on PostgreSQL and a bucket with 1-3 processes, then the output formats (minutes)
	scripts/test-deps.sh bench
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_images.py

image:  ## the container image, built with buildah on a base made from Debian's packages (minutes)
	scripts/test-deps.sh image
	scripts/image.sh

imagetest: image $(INSTALLED)  ## run the image under podman: its user, health, a job, SIGTERM, a restart
	$(BIN)/python scripts/imagetest.py

bench-images: $(INSTALLED)  ## bytes, look (SSIMULACRA2) and encode time per output format, on real photographs
	$(BIN)/python scripts/bench_images.py

screenshot: $(INSTALLED)  ## docs/screenshot.png of the page after a job (needs `make run` with a sample host)
	$(BIN)/python scripts/screenshot.py --csv $(or $(CSV),products.csv)

lint: $(INSTALLED)  ## ruff and mypy --strict, as CI would
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(INSTALLED)  ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove the virtualenv, caches and runtime data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
	find storage -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
