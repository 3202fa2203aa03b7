"""How TensorFlow is set up in each kind of process: the app's server and the training workers.

The server is shared by every user of a hosted class, so a native crash there drops them all;
training runs in worker processes of its own (:mod:`fertools.jobs`), where speed matters more.

* oneDNN: on Intel CPUs TensorFlow turns oneDNN on by default, and there the gradient of a
  separable convolution (Grad-CAM on ``mini_xception``) aborts the process with a heap
  corruption (``double free or corruption``). The server turns oneDNN off (its inference runs
  on LiteRT, which this does not touch); workers get back whatever the user had set, so
  training keeps oneDNN's fast (AMX, bfloat16) kernels.

Both settings are read once, when TensorFlow is imported: call :func:`protect_server` first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
#: Where the server keeps the user's own oneDNN setting ("" for none) for its workers.
_USER_ONEDNN = "FERLAB_USER_ONEDNN_OPTS"


def protect_server() -> bool:
    """Turn oneDNN off for this process; True if that took effect.

    It takes effect only before TensorFlow is imported (False after: the caller is then a
    test process or an embedding that chose its own settings).
    """
    os.environ.setdefault(_USER_ONEDNN, os.environ.get(ONEDNN, ""))
    if "tensorflow" in sys.modules:
        return os.environ.get(ONEDNN) == "0"
    os.environ[ONEDNN] = "0"
    return True


def worker_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a training worker: ``base`` with the user's own oneDNN setting back."""
    env = dict(os.environ if base is None else base)
    if _USER_ONEDNN in env:
        user = env.pop(_USER_ONEDNN)
        if user:
            env[ONEDNN] = user
        else:
            env.pop(ONEDNN, None)
    return env


#: How much lower than the server a training worker runs (``nice``): a page's work preempts
#: training, so pages stay quick while a run trains, and training still gets every idle cycle.
#: On Linux the worker also takes the ``SCHED_IDLE`` policy, which a niceness alone does not
#: give: measured with 16 students arriving at once beside a training (tools/loadtest.py),
#: result p95 7.43 s at nice 10 and 5.56 s with SCHED_IDLE.
WORKER_NICENESS = 10


#: Linux's scheduler autogroup of this process (``sched_autogroup``): CPU is shared fairly between
#: groups, and ``nice`` counts only inside one.
_AUTOGROUP = "/proc/self/autogroup"


def yield_to_pages() -> int:
    """Lower this process's CPU priority by :data:`WORKER_NICENESS`; the new niceness.

    Called by a training worker first thing. A worker runs in a session of its own, and where
    Linux groups the scheduler by session (autogroup, on by default on desktops and many
    servers) a session gets as much CPU as the server's whatever its processes' ``nice``; so
    the worker's autogroup is lowered too, and on Linux it takes the ``SCHED_IDLE`` policy:
    it runs only when nothing else wants the CPU. Where the OS refuses (or has no ``nice``),
    the worker trains at the server's priority.
    """
    try:
        niceness = os.nice(WORKER_NICENESS)
    except (OSError, AttributeError):
        return 0
    try:  # Linux: only idle CPU; every thread TensorFlow starts later inherits the policy
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        pass  # the niceness alone
    try:
        with open(_AUTOGROUP, "w", encoding="ascii") as group:
            group.write(str(niceness))
    except OSError:
        pass  # no autogroup (disabled, or not Linux): the process's own niceness is all there is
    return niceness


def autogroup_niceness(pid: int | str = "self") -> int | None:
    """The ``nice`` of a process's scheduler autogroup; None where there is no autogroup."""
    try:
        with open(f"/proc/{pid}/autogroup", encoding="ascii") as group:
            return int(group.read().split()[-1])  # "/autogroup-107 nice 10"
    except (OSError, ValueError, IndexError):
        return None


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs oneDNN kernels (imports TensorFlow)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


#: CPU flags (Linux ``/proc/cpuinfo``) of the units that run bfloat16 matrix maths natively.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has bfloat16 units (AMX or AVX-512 BF16); False where that cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
                cpuinfo = file.read(256 * 1024)  # the first processor's flags are near the top
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return any(flag in line.split() for flag in BF16_FLAGS)
    return False
