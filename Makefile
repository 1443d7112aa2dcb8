# natlab: `sudo make experiment` runs the paper's experiment; `sudo make test` runs the tests.
# Both install what they need first (setup/install.sh: Debian/Ubuntu packages + .venv).
PY := .venv/bin/python
NATLAB := .venv/bin/natlab

.PHONY: setup experiment test cli clean check lint bench

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

check: setup
	$(NATLAB) check

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy natlab topology agents scenarios services capture analysis report impair bench tests

bench: setup
	$(PY) -m bench.topology_time
	@if [ -f bench/rtp_speed.py ]; then $(PY) -m bench.rtp_speed; fi
