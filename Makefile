# Two entry points for a fresh machine: `make demo` and `make test` (both run setup first).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

demo: setup
	$(BIN)/ventriloquist demo --out out

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/ventriloquist bench

clean:
	rm -rf out .pytest_cache
