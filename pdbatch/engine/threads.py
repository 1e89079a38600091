"""How many CPU threads llama.cpp may use, decided from what the other processes leave free.

llama.cpp (built with OpenMP, as llama-cpp-python ships it) makes its threads
meet at a barrier after every operation of the model graph, hundreds of times
per step, and a thread that arrives first spins until the others arrive. When
another process holds one of the cores, a thread of ours is descheduled for a
whole time slice while its partner spins: measured on the 2-core VM under a
load average of 14, one prompt of 64 tokens took 9.7 s on two threads against
0.9 s on one, and a single-token step 0.80 s against 0.06 s. A fixed "all
cores" policy therefore collapses exactly when a notebook user's machine is
busy.

:class:`ThreadGovernor` measures, between steps, how much CPU time the other
processes used (system busy time from ``/proc/stat`` minus this process's own
CPU time, spinning included) and gives llama.cpp the cores they leave free,
rounded, at least one: a fifth of a second after another process takes a
core, a second after the machine quiets down. OpenMP's passive waiting
(``OMP_WAIT_POLICY=PASSIVE``) also avoids the collapse, but on a quiet
machine every barrier then costs a thread wake-up, hundreds per step.
"""

from __future__ import annotations

import os
import time

INTERVAL = 1.0  # seconds before one thread may become more: a few steps, long enough to average over
FIRST_WINDOW = 0.2  # the first decision, and each one while several threads run, after this much


def _busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (``/proc/stat``), or None where unreadable."""
    try:
        with open("/proc/stat", "rb") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu" or len(fields) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    # steal is time the hypervisor gave to other machines: as lost to us as another process's time
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


class ThreadGovernor:
    """Picks llama.cpp's thread count from the cores other processes leave free.

    Parameters
    ----------
    fixed : int, optional
        A thread count chosen by the user: always returned, nothing measured.
    cores : int, optional
        Cores to share (default: the ones this process may run on).
    """

    def __init__(self, fixed: int | None = None, cores: int | None = None) -> None:
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.cores = max(1, int(cores))
        self.fixed = fixed
        self.threads = fixed or self._first_guess()
        self._mark = (time.monotonic(), _busy_seconds(), _own_seconds())
        self._window = FIRST_WINDOW

    def _first_guess(self) -> int:
        # No interval measured yet: the 1-minute load average stands for the
        # other processes (this worker has only loaded a model so far).
        try:
            others = os.getloadavg()[0]
        except OSError:
            return self.cores
        return self._fit(others)

    def _fit(self, others: float) -> int:
        return max(1, min(self.cores, round(self.cores - others)))

    def update(self) -> int:
        """The thread count to use now.

        The first decision measures from the governor's creation (the model
        load) once :data:`FIRST_WINDOW` has passed; later ones come after
        :data:`FIRST_WINDOW` while several threads run, :data:`INTERVAL`
        while one does.
        """
        if self.fixed:
            return self.fixed
        now = time.monotonic()
        then, busy0, own0 = self._mark
        if now - then < self._window:
            return self.threads
        busy, own = _busy_seconds(), _own_seconds()
        self._mark = (now, busy, own)
        if busy is None or busy0 is None:
            return self.threads
        others = max(0.0, (busy - busy0) - (own - own0)) / (now - then)
        self.threads = self._fit(others)
        # Several threads collapse as soon as another process takes a core:
        # check again after a short window. One thread risks nothing by
        # waiting a full interval before taking the cores back.
        self._window = FIRST_WINDOW if self.threads > 1 else INTERVAL
        return self.threads
