"""Command-line entry point: `python main.py --help`."""

from bot.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
