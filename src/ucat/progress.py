"""Progress of long work: a live bar on a terminal, timestamped lines in a log file.

The engines send each job's output to a log file (``logs/…``); tqdm's carriage-return bar is
unreadable there.  When stderr is not a terminal every update is one line with the wall-clock
time, written at most every ``LOG_INTERVAL`` seconds, so ``tail -f logs/…`` shows the steps, the
rate, the time left and the loss as they come.  Wall-clock times go to logs only, never into an
output.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

LOG_INTERVAL = 30.0   # seconds between lines in a log file


class _LogLines(tqdm):
    """tqdm whose every display is a timestamped line (for files, where ``\\r`` does not work)."""

    @staticmethod
    def status_printer(file):
        def print_status(s):
            if s:
                file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {s.strip()}\n")
                file.flush()
        return print_status


def progress(iterable=None, *, desc: str, total: int | None = None, initial: int = 0, disable: bool = False,
             unit: str = "it"):
    """A tqdm bar on a terminal, timestamped log lines otherwise (see the module docstring)."""
    on_terminal = sys.stderr.isatty()
    cls = tqdm if on_terminal else _LogLines
    return cls(iterable, desc=desc, total=total, initial=initial, disable=disable, unit=unit,
               mininterval=2 if on_terminal else LOG_INTERVAL, file=sys.stderr, dynamic_ncols=on_terminal,
               ascii=not on_terminal)
