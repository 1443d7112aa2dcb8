# natlab: `sudo make experiment` runs the paper's experiment; `sudo make test` runs the tests.
# Both install what they need first (setup/install.sh: Debian/Ubuntu packages + .venv).
# `make lint` and `make check` need no root: they use an existing .venv.
PY := .venv/bin/python
NATLAB := .venv/bin/natlab
NO_VENV := make: no .venv here; run 'sudo make setup', or without root: \
	python3 -m venv --system-site-packages .venv && .venv/bin/pip install -e '.[dev]'

.PHONY: setup venv experiment test cli clean check lint bench

setup:
	@bash setup/install.sh

experiment: setup
	$(NATLAB) run

test: setup
	$(PY) -m pytest -q

cli: setup
	$(NATLAB) cli

clean: setup
	$(NATLAB) clean

check: venv
	$(NATLAB) check

lint: venv
	.venv/bin/ruff check .
	.venv/bin/mypy natlab topology agents scenarios services capture analysis report impair bench tests

venv:
	@test -x .venv/bin/ruff -a -x .venv/bin/mypy -a -x $(NATLAB) || { echo "$(NO_VENV)"; exit 1; }

# `make bench`: every timing figure into results/bench/*.json, then the bench.md table
# (experiment.json comes from the last full `make experiment`; absent figures say so).
bench: setup
	$(PY) -m bench.topology_time
	$(PY) -m bench.rtp_speed
	$(PY) -m bench.shaper
	$(PY) -m bench.load
	$(PY) -m bench.report
