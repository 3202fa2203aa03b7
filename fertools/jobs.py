"""Training jobs: background worker processes with all their state on disk.

A page script must never train (it reruns on every click), so :func:`submit`
starts a detached worker process, ``python -m fertools.jobs <run_dir>``, and
returns at once. Everything about a job lives in its run folder, so any page
view, a reloaded browser tab or a restarted server finds it again with
:func:`list_runs`::

    runs/
      _datasets/<owner>/<sha1>.npz  each submitted dataset, saved once per owner (content-addressed;
                                    ``_datasets/<sha1>.npz`` for runs without an owner)
      _slots/slot-<i>.lock   one lock file per concurrent job (FERLAB_MAX_JOBS, default 1)
      _slots/queue.lock      held while a run is queued or deleted, so quotas count every run
      <run id>/            a run folder (fertools.runs: job.json, status.json, cancel, worker.log,
                           and what fertools.train.train writes)

A queued worker holds no slot; it polls for one every half second and takes a
slot by ``flock``-ing its lock file, which the kernel releases when the worker
exits, however it exits. A run that says queued or running but whose worker is
gone is reported (and recorded) as failed.

Runs have owners (a :class:`fertools.users.User` id in job.json, or none for runs started
before users existed and from the command line). :func:`permissions` says what a user may do
with a run; :func:`cancel`, :func:`delete_run` and :func:`share` refuse a user who may not.
On a hosted server (``FERLAB_HOSTED=1``) :func:`submit` and :func:`sweep` also enforce the
class quotas (:class:`fertools.users.Quotas`); a single-user FER Lab has one user who may do
everything, and no quotas but ``FERLAB_MAX_JOBS``.

This module imports TensorFlow only where it trains, so waiting workers stay small.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fertools import limits
from fertools.config import TrainConfig
from fertools.constants import PROJECT_ROOT, runs_dir
from fertools.runs import ACTIVE_STATES, DONE_STATES, RunDir, atomic_file
from fertools.runtime import worker_environment, yield_to_pages
from fertools.users import Quotas, User, env_int, hosted, is_user_id

if TYPE_CHECKING:
    from fertools.data import Dataset

DATASETS = "_datasets"
SLOTS = "_slots"
QUEUE_LOCK = "queue.lock"
#: Seconds between a queued worker's looks for a free slot.
POLL_SECONDS = 0.5
DEAD_WORKER = "the worker stopped unexpectedly"

# Workers this process started. Polling them reaps the ones that exited: an
# unreaped child is a zombie, and os.kill(pid, 0) would call it alive.
_children: list[subprocess.Popen] = []


class JobError(ValueError):
    """A job request that cannot be done (unknown run, deleting a running one); one sentence."""


@dataclass(frozen=True)
class RunInfo:
    """A training run as the app shows it.

    ``created`` is a Unix time; ``metrics`` is metrics.json once the run has
    one, ``progress`` the latest progress.json; ``queue_position`` is 1-based
    among queued runs, None unless queued; ``reason`` says why a run failed or
    was cancelled. ``managed`` is False for runs started from the command line
    (shown, but not cancellable or deletable here). ``owner`` is the id of the
    user who queued the run (None: nobody's); ``shared`` says its owner lets
    everyone see its faces and download its model (see :func:`permissions`).
    """

    id: str
    name: str
    state: str
    created: float
    config: TrainConfig
    dataset_label: str
    metrics: dict | None
    progress: dict | None
    queue_position: int | None
    reason: str
    run_dir: Path
    started: float | None = None
    finished: float | None = None
    sweep: dict | None = None
    managed: bool = True
    #: Why some of the run's files could not be read ("" when none): shown, never raised.
    damage: str = ""
    owner: str | None = None
    shared: bool = False

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def run(self) -> RunDir:
        return RunDir(self.run_dir)

    @property
    def cancel_requested(self) -> bool:
        return self.run.cancel_requested

    @property
    def model_dir(self) -> Path | None:
        """The run's saved model folder, once training has written one."""
        from fertools.modelcard import MODEL_FILE

        folder = self.run.model_dir
        return folder if (folder / MODEL_FILE).exists() else None

    @property
    def accuracy(self) -> float | None:
        return float(self.metrics["accuracy"]) if self.metrics and "accuracy" in self.metrics else None

    @property
    def elapsed(self) -> float | None:
        """Seconds of training so far (or in all, once finished)."""
        if self.started is None:
            return None
        end = self.finished if self.finished is not None and not self.active else time.time()
        return max(0.0, end - self.started)


@dataclass(frozen=True)
class Permissions:
    """What one user may do with one run (see :func:`permissions`).

    Everyone may see a run's name, state, curves and scores. ``manages`` says the user is the
    run's owner or the teacher (or this is a single-user FER Lab); ``can_see_faces`` covers the
    validation faces (the mistakes gallery and predictions), ``can_download`` the model (its
    downloads, using it on other pages, converting it), ``can_see_dataset_name`` the label of the
    dataset it trained on (often an uploaded file's name) and its worker's log.
    """

    manages: bool
    can_see_faces: bool
    can_download: bool
    can_cancel: bool
    can_delete: bool
    can_share: bool
    can_see_dataset_name: bool


def _refusal(run_id: str, owner: str | None, user: User | None, action: str) -> str:
    """Why ``user`` may not ``action`` (cancel, delete, share) the run; "" when they may."""
    if not hosted():
        return ""  # a single-user FER Lab: everybody is the one user
    if user is not None and (user.is_teacher or (owner is not None and owner == user.id)):
        return ""
    if owner is None:
        return (
            f"Run {run_id} belongs to no one (it was started before this server had users, or from "
            f"the command line): only the teacher may {action} it."
        )
    return f"Run {run_id} is someone else's: only its owner and the teacher may {action} it."


def permissions(run: RunInfo, user: User | None) -> Permissions:
    """What ``user`` may do with ``run``.

    Its owner and the teacher may do everything (cancel and delete only runs started here, not
    from the command line); others see its faces and model only once the owner shares it. In a
    single-user FER Lab everybody may do everything; on a hosted server ``user=None`` is nobody.
    """
    manages = not _refusal(run.id, run.owner, user, "manage")
    return Permissions(
        manages=manages,
        can_see_faces=manages or run.shared,
        can_download=manages or run.shared,
        can_cancel=manages and run.managed,
        can_delete=manages and run.managed,
        can_share=manages and run.managed,
        can_see_dataset_name=manages,
    )


def _owner_of(job: dict | None) -> str | None:
    owner = (job or {}).get("owner")
    return owner if is_user_id(owner) else None


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root) if root is not None else runs_dir()


def _run_dir(run_id: str, root: str | os.PathLike | None = None) -> Path:
    folder = _root(root) / run_id
    if run_id.startswith(("_", ".")) or "/" in run_id or not folder.is_dir():
        raise JobError(f"there is no run {run_id!r}.")
    return folder


def max_jobs() -> int:
    """How many jobs may train at once (``FERLAB_MAX_JOBS``, default 1)."""
    return env_int(Quotas.VARIABLES["max_jobs"], Quotas.max_jobs)


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261120-231500-ab12``."""
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


# --- submitting ------------------------------------------------------------------------------


def dataset_digest(dataset: Dataset) -> str:
    """SHA-1 of a dataset's content (faces, labels, splits, classes)."""
    digest = hashlib.sha1()
    for array in (dataset.images, dataset.labels, dataset.split):
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    digest.update("|".join(dataset.classes).encode())
    return digest.hexdigest()


def _datasets_dir(root: Path, owner: str | None) -> Path:
    # Per owner, so no user reaches another's data, not even by naming its digest.
    if owner is None:
        return root / DATASETS
    if not is_user_id(owner):
        raise ValueError(f"{owner!r} is not a user id (lower-case letters, digits and hyphens).")
    return root / DATASETS / owner


def save_dataset(dataset: Dataset, root: str | os.PathLike | None = None, owner: str | None = None) -> Path:
    """Save ``dataset`` once per owner under ``runs/_datasets/<owner>/<sha1>.npz``; return its path.

    Without an owner it goes to ``runs/_datasets/<sha1>.npz``.
    """
    return _save_dataset(dataset, _root(root), owner, dataset_digest(dataset))


def _save_dataset(dataset: Dataset, root: Path, owner: str | None, digest: str) -> Path:
    from fertools.data import save_npz

    folder = _datasets_dir(root, owner)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.npz"
    if not path.exists():
        with atomic_file(path, suffix=".npz") as partial:
            save_npz(dataset, partial)
    return path


@contextlib.contextmanager
def _queue_lock(root: Path) -> Iterator[None]:
    """Hold the runs folder's queue lock: counting a user's runs and adding one is one step."""
    folder = root / SLOTS
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder / QUEUE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, names in os.walk(path):  # symbolic links to folders are not followed
        for name in names:
            with contextlib.suppress(OSError):  # a file replaced or deleted while we count
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def disk_used(owner: str, root: str | os.PathLike | None = None) -> int:
    """Bytes on disk of every run of ``owner`` and of the datasets saved for them."""
    root = _root(root)
    total = _tree_bytes(_datasets_dir(root, owner)) if is_user_id(owner) else 0
    for folder in _run_folders(root):
        if _owner_of(RunDir(folder).read_job()) == owner:
            total += _tree_bytes(folder)
    return total


def active_runs(owner: str, root: str | os.PathLike | None = None) -> int:
    """How many runs of ``owner`` are queued or running."""
    root = _root(root)
    return sum(
        1
        for folder in _run_folders(root)
        if (raw := _load_run(folder)) and raw["state"] in ACTIVE_STATES and _owner_of(raw["job"]) == owner
    )


def _run_name(config: TrainConfig, name: str | None) -> str:
    return (
        limits.clean_name(name) or f"{config.architecture}, {config.epochs} epochs, batch {config.batch_size}"
    )


def _request(digest: str, config: TrainConfig, name: str, label: str, owner: str | None, values) -> str:
    """What makes two submissions the same request: a key stored in job.json (see ``once``)."""
    request = {"dataset": digest, "config": config.to_dict(), "name": name, "label": label, "owner": owner}
    text = json.dumps({**request, "sweep": values}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def _active_requests(root: Path) -> dict[str, str]:
    """Request key -> id of each run that is queued or running, and not asked to stop.

    A run being cancelled is still active until its worker exits; a Start pressed meanwhile is a
    new run, not a double click on the one going away.
    """
    return {
        raw["job"]["request"]: folder.name
        for folder in _run_folders(root)
        if (raw := _load_run(folder))
        and raw["state"] in ACTIVE_STATES
        and isinstance(raw["job"].get("request"), str)
        and not RunDir(folder).cancel_requested
    }


def _check_quotas(root: Path, owner: str | None, configs: list[TrainConfig], *, sweep: bool) -> None:
    """Refuse (``QuotaError``, one sentence) what the class quotas do not allow; only when hosted."""
    if owner is not None and not is_user_id(owner):
        raise ValueError(f"{owner!r} is not a user id (lower-case letters, digits and hyphens).")
    if not hosted():
        return
    if owner is None:
        raise JobError("On a hosted server every run needs an owner: pass the user's id as owner.")
    quotas = Quotas.from_env()
    if sweep:
        quotas.check_sweep(len(configs))
    quotas.check_epochs(max(config.epochs for config in configs))
    quotas.check_runs(active_runs(owner, root), len(configs), sweep=sweep)
    quotas.check_disk(disk_used(owner, root))


def submit(
    dataset: Dataset,
    config: TrainConfig,
    name: str | None = None,
    dataset_label: str = "",
    *,
    owner: str | None = None,
    sweep: dict | None = None,
    once: bool = False,
    root: str | os.PathLike | None = None,
) -> str:
    """Queue a training run of ``config`` on ``dataset`` for ``owner``; start its worker; return the run id.

    Returns at once: the worker waits for a free slot, then trains. ``owner`` is a user id
    (:class:`fertools.users.User`), recorded in job.json; None makes the run nobody's, which a
    hosted server refuses. With ``once``, the same request (dataset, config, name, label and
    owner) while an earlier one is still queued or running returns the earlier run's id instead
    of queueing another: a double click on Start queues one run. Raises ``ValueError`` with one
    sentence if ``config`` cannot work, and on a hosted server ``QuotaError`` (a ``ValueError``)
    if a class quota does not allow it.
    """
    config.validate()
    root = _root(root)
    digest = dataset_digest(dataset)
    with _queue_lock(root):
        values = (sweep or {}).get("values")
        request = _request(digest, config, _run_name(config, name), dataset_label, owner, values)
        if once and (earlier := _active_requests(root).get(request)):
            return earlier
        _check_quotas(root, owner, [config], sweep=False)
        return _queue(
            dataset, config, name, dataset_label, owner=owner, sweep=sweep, root=root, digest=digest
        )


def _queue(
    dataset: Dataset,
    config: TrainConfig,
    name: str | None,
    dataset_label: str,
    *,
    owner: str | None,
    sweep: dict | None,
    root: Path,
    digest: str,
) -> str:
    name = _run_name(config, name)
    dataset_path = _save_dataset(dataset, root, owner, digest)
    run_id = new_run_id()
    while (root / run_id).exists():
        run_id = new_run_id()
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    created = time.time()
    job = {
        "id": run_id,
        "name": name,
        "created": created,
        "created_iso": datetime.fromtimestamp(created).isoformat(timespec="seconds"),
        "owner": owner,
        "shared": False,
        "dataset": {"path": str(dataset_path), "label": dataset_label, "size": len(dataset)},
        "config": config.to_dict(),
        "sweep": sweep,
        "request": _request(digest, config, name, dataset_label, owner, (sweep or {}).get("values")),
        "state": "queued",
    }
    run = RunDir(run_dir)
    run.write_job(job)
    run.update_status("queued", reason="", created=created)
    env = {**worker_environment(), "PYTHONUNBUFFERED": "1"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # On a GPU, TensorFlow would otherwise take all its memory, starving a second job or the app.
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    try:
        with run.log_path.open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "fertools.jobs", str(run_dir)],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # NOTE: its own session, so the worker outlives the page, the server
                # and a Ctrl-C in the terminal that started them.
                start_new_session=True,
            )
    except OSError as error:
        run.update_status("failed", reason=f"the worker could not start ({error})", finished=time.time())
        raise JobError(f"the training worker could not start ({error}).") from None
    _children.append(worker)
    run.write_job({**job, "pid": worker.pid})
    return run_id


def sweep(
    dataset: Dataset,
    base: TrainConfig,
    grid: dict[str, list],
    dataset_label: str = "",
    *,
    owner: str | None = None,
    once: bool = False,
    root: str | os.PathLike | None = None,
) -> list[str]:
    """Queue one run per combination of ``grid`` values over ``base`` for ``owner``; return the run ids.

    ``grid`` maps TrainConfig fields to values, e.g. ``{"batch_size": [32, 64,
    128, 256], "epochs": [50, 100]}`` (the internship report's Table 1) queues
    eight runs. With ``once``, a sweep whose every run is already queued or
    running returns those runs instead (as :func:`submit` does). Raises
    ``ValueError`` for an unknown field or an empty list, and on a hosted server
    ``QuotaError`` if the quotas do not allow every run (then none is queued).
    """
    unknown = [key for key in grid if key not in type(base).__dataclass_fields__]
    if unknown:
        raise ValueError(f"cannot sweep over {', '.join(unknown)}: not training settings")
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError("every swept setting needs at least one value")
    keys = list(grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    # Swept epochs rescale the settings that count epochs (cosine cycles, weight average) to fit.
    configs = [
        replace(base.with_epochs(combo["epochs"]) if "epochs" in combo else base, **combo) for combo in combos
    ]
    for config in configs:  # all or nothing: check every config before queueing any
        config.validate()
    names = ["sweep " + ", ".join(f"{key}={value}" for key, value in combo.items()) for combo in combos]
    root = _root(root)
    digest = dataset_digest(dataset)
    sweep_id = new_run_id()
    with _queue_lock(root):
        if once:
            active = _active_requests(root)
            earlier = [
                active.get(_request(digest, config, name, dataset_label, owner, combo))
                for combo, config, name in zip(combos, configs, names)
            ]
            if all(earlier):
                return earlier
        _check_quotas(root, owner, configs, sweep=True)
        return [
            _queue(
                dataset,
                config,
                name,
                dataset_label,
                owner=owner,
                sweep={"id": sweep_id, "values": combo},
                root=root,
                digest=digest,
            )
            for combo, config, name in zip(combos, configs, names)
        ]


# --- reading runs ----------------------------------------------------------------------------


def _reap() -> None:
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)


def _pid_alive(pid: int | None, worker_only: bool) -> bool:
    """Whether ``pid`` is a live process (and, if ``worker_only``, a FER Lab worker)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False  # exited, not yet reaped by its parent
            command = (proc / "cmdline").read_bytes()
            # Just after Popen the command line can still be empty (the exec has not happened yet).
            # A run queued here may be resumed from the command line (python -m fertools train
            # --resume): that process is as alive as a worker.
            if worker_only and command and b"fertools" not in command:
                return False  # the pid was reused by another program
        except (OSError, IndexError):
            pass
    return True


def _load_run(run_dir: Path) -> dict | None:
    """Raw job, status and liveness for one folder; None if it is no run."""
    run = RunDir(run_dir)
    job = run.read_job()
    status = run.read_status()
    managed = job is not None
    if job is None:
        # A run started from the command line (fertools.cli train): shown read-only.
        config = run.read_config()
        if config is None or not status:
            return None
        job = {
            "id": run_dir.name,
            "name": run_dir.name,
            "created": status.get("started", 0.0),
            "config": config.to_dict(),
            "dataset": {"label": "(command line)"},
        }
    state = status.get("state", job.get("state", "queued"))
    if state in ACTIVE_STATES:
        pid = status.get("pid") or job.get("pid")
        if pid is None and managed and time.time() - job.get("created", 0) < 30:
            pass  # submit() is still starting the worker
        elif not _pid_alive(pid, worker_only=managed):
            # The worker writes its final state before it exits, so re-read before
            # calling the run failed: it may have finished a moment ago.
            status = run.read_status() or status
            state = status.get("state", state)
            if state in ACTIVE_STATES:
                state, status = "failed", {**status, "state": "failed", "reason": DEAD_WORKER}
                if managed:
                    run.update_status("failed", reason=DEAD_WORKER, finished=time.time())
    if state not in (*ACTIVE_STATES, *DONE_STATES):
        run.damage.append(f"status.json names no known state ({str(state)[:40]!r})")
        state = "failed"
    return {"job": job, "status": status, "state": state, "managed": managed, "run": run}


def _run_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))), key=lambda p: p.name
    )


def _info(run_dir: Path, raw: dict, queue_position: int | None) -> RunInfo:
    job, status, run = raw["job"], raw["status"], raw["run"]
    try:
        config = TrainConfig.from_dict(job.get("config") or {})
    except (TypeError, ValueError, AttributeError):
        run.damage.append("job.json holds settings this version cannot use")
        config = TrainConfig()
    metrics = run.read_metrics() if raw["state"] in DONE_STATES else None
    progress = run.read_progress()
    dataset = job.get("dataset") if isinstance(job.get("dataset"), dict) else {}
    sweep = job.get("sweep") if isinstance(job.get("sweep"), dict) else None
    return RunInfo(
        id=run_dir.name,
        name=str(job.get("name") or run_dir.name),
        state=raw["state"],
        created=_number(job.get("created")) or 0.0,
        config=config,
        dataset_label=str(dataset.get("label", "")),
        metrics=metrics,
        progress=progress,
        queue_position=queue_position,
        reason=str(status.get("reason", "") or ""),
        run_dir=run_dir,
        started=_number(status.get("started")),
        finished=_number(status.get("finished")),
        sweep=sweep,
        managed=raw["managed"],
        damage="; ".join(run.damage),
        owner=_owner_of(job),
        shared=raw["managed"] and job.get("shared") is True,
    )


def _number(value: Any) -> float | None:
    """A finite float from a run file's field, or None for anything else (a damaged file)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _queued_ids(raws: dict[Path, dict]) -> list[str]:
    queued = [
        (_number(raw["job"].get("created")) or 0.0, folder.name)
        for folder, raw in raws.items()
        if raw["state"] == "queued"
    ]
    return [run_id for _, run_id in sorted(queued)]


def list_runs(root: str | os.PathLike | None = None) -> list[RunInfo]:
    """Every run under the runs folder, newest first."""
    _reap()
    raws = {folder: raw for folder in _run_folders(_root(root)) if (raw := _load_run(folder))}
    queued = _queued_ids(raws)
    infos = [
        _info(folder, raw, queued.index(folder.name) + 1 if folder.name in queued else None)
        for folder, raw in raws.items()
    ]
    return sorted(infos, key=lambda info: (info.created, info.id), reverse=True)


def run_states(root: str | os.PathLike | None = None) -> dict[str, str]:
    """Run id -> the state its status.json records, for every run folder: a cheap way to notice
    that a run started, ended or appeared (a page compares two of these) without reading the rest.
    """
    return {
        folder.name: str(RunDir(folder).read_status().get("state", "queued"))
        for folder in _run_folders(_root(root))
    }


def get_run(run_id: str, root: str | os.PathLike | None = None) -> RunInfo:
    """One run; ``JobError`` if there is none with this id."""
    _reap()
    run_dir = _run_dir(run_id, root)
    raw = _load_run(run_dir)
    if raw is None:
        raise JobError(f"{run_id} is not a training run.")
    return _info(run_dir, raw, queue_position(run_id, root) if raw["state"] == "queued" else None)


def queue_position(run_id: str, root: str | os.PathLike | None = None) -> int | None:
    """1-based place of ``run_id`` among queued runs (oldest first); None if it is not queued."""
    _reap()
    raws = {folder: raw for folder in _run_folders(_root(root)) if (raw := _load_run(folder))}
    queued = _queued_ids(raws)
    return queued.index(run_id) + 1 if run_id in queued else None


def history(run_id: str, root: str | os.PathLike | None = None) -> list[dict]:
    """The run's history.csv: one dict of floats per finished epoch (epoch is 0-based, as Keras writes it)."""
    return RunDir(_run_dir(run_id, root)).read_history()


def cancel(run_id: str, root: str | os.PathLike | None = None, *, user: User | None = None) -> None:
    """Ask a queued or running job to stop, on behalf of ``user``.

    A queued run is marked cancelled at once; a running one stops at its next
    batch, saves its best epoch so far and is marked cancelled by its worker.
    Cancelling a finished run does nothing. ``JobError`` if ``user`` may not
    (see :func:`permissions`) or the run was started from the command line.
    """
    run_dir = _run_dir(run_id, root)
    run = RunDir(run_dir)
    job = run.read_job()
    if refusal := _refusal(run_id, _owner_of(job), user, "cancel"):
        raise JobError(refusal)
    if job is None:
        raise JobError(f"{run_id} was started from the command line; stop it there (Ctrl-C).")
    run.request_cancel()
    if run.read_status().get("state") == "queued":
        run.update_status("cancelled", reason="cancelled by the user before it started", finished=time.time())


def delete_run(run_id: str, root: str | os.PathLike | None = None, *, user: User | None = None) -> None:
    """Delete a finished, failed or cancelled run's folder, on behalf of ``user``.

    The dataset saved for it goes too, unless another run of the same owner still uses it.
    ``JobError`` if ``user`` may not (see :func:`permissions`), or the run is still active
    or was started from the command line.
    """
    root = _root(root)
    info = get_run(run_id, root)
    if refusal := _refusal(info.id, info.owner, user, "delete"):
        raise JobError(refusal)
    if not info.managed:
        raise JobError(f"{run_id} was started from the command line; delete its folder by hand.")
    if info.state not in DONE_STATES:
        raise JobError(f"{run_id} is still {info.state}; cancel it first.")
    job = info.run.read_job() or {}
    # Under the queue lock: a run being queued meanwhile may need this very dataset file.
    with _queue_lock(root):
        shutil.rmtree(info.run_dir)
        _forget_dataset(root, (job.get("dataset") or {}).get("path"))


def _forget_dataset(root: Path, dataset_path: object) -> None:
    """Delete a saved dataset that no run names any more (only inside ``runs/_datasets``)."""
    if not isinstance(dataset_path, str) or not dataset_path:
        return
    path = Path(dataset_path)
    if not path.resolve().is_relative_to((root / DATASETS).resolve()):
        return  # whatever job.json says, only files this module saved are deleted
    # Paths are per owner, so another owner's run never keeps this file alive.
    still_used = any(
        ((RunDir(folder).read_job() or {}).get("dataset") or {}).get("path") == dataset_path
        for folder in _run_folders(root)
    )
    if not still_used:
        path.unlink(missing_ok=True)


def share(
    run_id: str, user: User | None, shared: bool = True, *, root: str | os.PathLike | None = None
) -> None:
    """Let everyone see the run's validation faces and download its model (or, ``shared=False``, stop).

    ``JobError`` if ``user`` is not the run's owner or the teacher, or the run was started from
    the command line (it has no job.json to record the choice in).
    """
    info = get_run(run_id, root)
    if refusal := _refusal(info.id, info.owner, user, "share"):
        raise JobError(refusal)
    job = info.run.read_job()
    if job is None:
        raise JobError(f"{run_id} was started from the command line; it cannot be shared here.")
    info.run.write_job({**job, "shared": bool(shared)})


# --- the worker --------------------------------------------------------------------------------


def _take_slot(root: Path) -> int | None:
    """Lock a free slot file; the open descriptor (kept for life) holds the slot."""
    folder = root / SLOTS
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(max_jobs()):
        handle = os.open(folder / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            continue
        return handle
    return None


def _wait_for_slot(run_dir: Path) -> int | None:
    """Block until this run holds a slot; None if it was cancelled while queued."""
    root = run_dir.parent
    while True:
        if RunDir(run_dir).cancel_requested:
            return None
        try:
            position = queue_position(run_dir.name, root)
        except OSError:  # a run folder changed under us (deleted, half written): look again
            time.sleep(POLL_SECONDS)
            continue
        # Only the runs at the head of the queue try, so runs start in the order they were queued.
        if position is None or position <= max_jobs():
            slot = _take_slot(root)
            if slot is not None:
                return slot
        time.sleep(POLL_SECONDS)


def run_worker(run_dir: str | os.PathLike) -> int:
    """The worker's body: wait for a slot, then train; return the process exit code."""
    run = RunDir(Path(run_dir).resolve())
    job = run.read_job()
    if job is None:
        print(f"{run.path} holds no readable job.json", file=sys.stderr)
        return 2
    state = run.read_status().get("state")
    if state not in (None, "queued"):
        print(f"run {run.id} is already {state}", file=sys.stderr)
        return 0
    run.update_status("queued", pid=os.getpid())
    slot = _wait_for_slot(run.path)
    if slot is None or run.cancel_requested:
        run.update_status("cancelled", reason="cancelled by the user before it started", finished=time.time())
        return 0
    run.update_status("running", pid=os.getpid(), started=time.time(), phase="loading")
    try:
        # Heavy imports only now that this worker may train.
        from fertools.data import load_npz
        from fertools.train import train

        dataset = load_npz(job["dataset"]["path"])
        config = TrainConfig.from_dict(job["config"])
        result = train(
            dataset,
            config,
            run.path,
            should_stop=lambda: run.cancel_requested,
            command=f"python -m fertools.jobs {run.path}",
        )
    except Exception as error:  # noqa: BLE001 - any failure must end as a failed run, not a hang
        if run.read_status().get("state") != "failed":  # train() records its own failures
            run.update_status("failed", reason=f"{type(error).__name__}: {error}", finished=time.time())
        print(f"run {run.id} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"run {run.id} {result.status} {result.reason}".rstrip(), file=sys.stderr)
    return 0 if result.status != "failed" else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m fertools.jobs RUN_DIR", file=sys.stderr)
        return 2
    yield_to_pages()
    return run_worker(args[0])


__all__ = [
    "JobError",
    "Permissions",
    "RunInfo",
    "active_runs",
    "cancel",
    "delete_run",
    "disk_used",
    "get_run",
    "history",
    "list_runs",
    "max_jobs",
    "permissions",
    "queue_position",
    "share",
    "submit",
    "sweep",
]

if __name__ == "__main__":
    sys.exit(main())


def stop_children(timeout: float = 60) -> None:
    """Cancel every worker this process started and wait for each (kill one that hangs).

    For a clean shutdown of a server, and for tests: workers outlive the page
    runs that start them on purpose, so something has to end them.
    """
    for child in _children:
        run_dir = Path(child.args[-1])
        if child.poll() is None and run_dir.is_dir():
            RunDir(run_dir).request_cancel()
    for child in _children:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    _children.clear()
