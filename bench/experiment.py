"""The full experiment's wall time, per set and per phase, into results/bench/experiment.json.

`natlab run` (the default sets) writes it at the end of every full run. By hand, from run
folders (e.g. one run per set):

    python -m bench.experiment results/20261203-0800 results/20261203-0805 ...
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from report.timing import write_experiment

OUT = Path(__file__).resolve().parent.parent / "results" / "bench" / "experiment.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.experiment", description=__doc__)
    p.add_argument("rundirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    out = write_experiment([d.resolve() for d in args.rundirs], args.out)
    f = json.loads(out.read_text())
    print(f"experiment {f['total_s']} s (run {f['run_s']} s, analysis {f['analysis_s']} s); "
          + ", ".join(f"{k} {v} s" for k, v in f["sets"].items()) + f" -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
