"""`python -m calsync`: the `calsync` command."""

from calsync.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
