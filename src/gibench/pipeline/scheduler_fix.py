"""Stop Snakemake's scheduler from polling ever faster as jobs finish (a workaround, issue 23).

What goes wrong (Snakemake 9.x up to at least 9.27; ``snakemake/scheduling/job_scheduler.py``):
with a job rate limit -- and the command line always sets one, ``--max-jobs-per-timespan``
defaults to ``100/1s`` -- every pass of the scheduler loop ends by starting a
``threading.Timer(timespan)`` that wakes the loop again.  A pass is also started by every job
that finishes, and that pass starts its own timer too, so after *k* finished jobs *k* timer
chains are alive and the loop runs about *k* passes per second.  Each pass stats the input
files of every ready job (``update_input_sizes``) and walks every job of the DAG
(``remaining_jobs``), whether or not a core is free.  Measured in ``make reproduce``
(739 jobs, 2 cores): the Snakemake process used 16 % of a core after 10 minutes, 38 % after
23 minutes, and so on, taking CPU from the attack jobs (``benchmarks/bench_scheduler.py``
measures the same on a small workflow with and without this fix).

The fix: at most one re-evaluation timer is pending at any time (a pass that finds one pending
starts none), and the timer is a daemon thread, so the run does not wait for it at exit.  That
keeps what the timer is for -- re-evaluating after the rate limit's timespan -- and the passes
started by finished jobs, which is how every job is scheduled; it changes which jobs run
nothing, only how often the loop wakes without cause.

Written by hand because Snakemake offers no setting for it (the timer is started
unconditionally while a rate limit is set, and the command line cannot unset the limit).
Applied from the Snakefile in the main process only; if Snakemake's scheduler no longer has
the method patched here (a version that changed it), nothing is patched and the run is
unaffected.
"""
from __future__ import annotations

import threading

_PATCHED = "_gibench_single_timer"


def _single_timer(self, delay: float) -> None:
    """Replacement for ``JobScheduler._schedule_reevalutation``: one pending timer at most."""
    lock = self.__dict__.setdefault("_gibench_timer_lock", threading.Lock())
    with lock:
        if self.__dict__.get("_gibench_timer_pending"):
            return
        self._gibench_timer_pending = True

    def fire() -> None:
        with lock:
            self._gibench_timer_pending = False
        self._open_jobs.release()

    timer = threading.Timer(delay, fire)
    timer.daemon = True
    timer.start()


setattr(_single_timer, _PATCHED, True)


def apply() -> bool:
    """Patch Snakemake's job scheduler (idempotent).  True if the patch is (now) in place."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:  # a Snakemake whose scheduler moved: leave it alone
        return False
    current = getattr(JobScheduler, "_schedule_reevalutation", None)
    if current is None:
        return False
    if getattr(current, _PATCHED, False):
        return True
    JobScheduler._schedule_reevalutation = _single_timer
    return True
