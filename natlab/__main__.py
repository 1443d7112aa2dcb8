from natlab.cli import main

if __name__ == "__main__":  # not again in a spawned worker process (natlab.early)
    raise SystemExit(main())
