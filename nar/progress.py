"""The training progress line: what a run is doing, and only the estimates it can make.

While a step's program compiles (the first steps of a run, tens of seconds
each on a CPU), the line reads `compiling` with the elapsed time ticking, and no
rate or ETA: those steps say nothing about the steps after them. Once steady
steps (of compiled programs) exist, the rate and the ETA are theirs alone (tqdm's
own mixed the two and promised an hour and a half for a run that ended three
minutes later). The best validation score appears once there is one.
"""

from __future__ import annotations

import sys
import threading
from typing import Optional, TextIO

# tqdm's bar without its own rate and ETA (`TrainingBar.postfix` has them).
BAR_FORMAT = '{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]'


def clock(seconds: float) -> str:
  """`MM:SS`, or `H:MM:SS` from an hour on."""
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}:{m:02d}:{s:02d}' if h else f'{m:02d}:{s:02d}'


class TrainingBar:
  """A tqdm bar over training steps.

  Per step, the loop calls `compiling(True)` before a step whose program is not
  compiled yet, then `step(seconds, steady, loss)`; `validated(best)` after a
  validation.

  Args:
    desc: the label (the algorithm).
    total: the last step; initial: the step the run starts from.
    file: where it is drawn (default stdout); mininterval: seconds between
      redraws (default: 0.1 on a terminal, 30 in a log file); while compiling,
      the line is redrawn every max(1, mininterval) seconds (the time ticks).
  """

  def __init__(self, desc: str, total: int, initial: int = 0, file: Optional[TextIO] = None,
               mininterval: Optional[float] = None):
    from tqdm import tqdm
    file = file or sys.stdout
    if mininterval is None:
      mininterval = 0.1 if file.isatty() else 30.0
    self.steady_steps = 0
    self.steady_s = 0.0
    self._compiling = False
    self._total = total
    self._loss: Optional[float] = None
    self._val: Optional[float] = None
    self._tick_s = max(1.0, mininterval)
    self._wake = threading.Event()
    self._closed = False
    self._bar = tqdm(total=total, initial=initial, desc=desc, unit='step', dynamic_ncols=True,
                     file=file, mininterval=mininterval, bar_format=BAR_FORMAT)
    self._bar.set_postfix_str(self.postfix(), refresh=False)
    self._ticker = threading.Thread(target=self._tick, daemon=True)
    self._ticker.start()

  def postfix(self) -> str:
    """`compiling` (while a program compiles, or before any steady step) or
    `<rate> step/s, ETA <time>` of the steady steps; then the last loss and the
    best validation score, each once known."""
    parts = []
    if self._compiling or self.steady_steps == 0:
      parts.append('compiling')
    else:
      rate = self.steady_steps / max(self.steady_s, 1e-9)
      parts.append(f'{rate:.2f} step/s' if rate < 10 else f'{rate:.1f} step/s')
      parts.append(f'ETA {clock((self._total - self._bar.n) / rate)}')
    if self._loss is not None:
      parts.append(f'loss={self._loss:.3f}')
    if self._val is not None:
      parts.append(f'val={self._val:.3f}')
    return ', '.join(parts)

  def compiling(self, yes: bool = True) -> None:
    """The next step's program is (not) being compiled: said at once."""
    if yes != self._compiling:
      self._compiling = yes
      self._bar.set_postfix_str(self.postfix(), refresh=True)
      self._wake.set()

  def step(self, seconds: float, steady: bool, loss: float) -> None:
    """One step done in `seconds`; `steady`: its program had run before (a first
    run is compilation, not a rate)."""
    if steady:
      self.steady_steps += 1
      self.steady_s += seconds
    self._compiling = False
    self._loss = loss
    self._bar.set_postfix_str(self.postfix(), refresh=False)
    self._bar.update(1)

  def validated(self, best: float) -> None:
    """The best validation score so far (shown from the first validation on)."""
    self._val = best
    self._bar.set_postfix_str(self.postfix(), refresh=False)

  def _tick(self) -> None:
    # tqdm redraws only when told: while a program compiles nothing tells it.
    while not self._closed:
      if self._compiling or self.steady_steps == 0:
        self._wake.wait(self._tick_s)
        if self._closed:
          return
        if self._compiling:
          self._bar.refresh()
      else:
        self._wake.wait()
      self._wake.clear()

  def close(self) -> None:
    self._closed = True
    self._wake.set()
    self._ticker.join(timeout=5)
    self._bar.close()

  def __str__(self) -> str:
    return str(self._bar)
