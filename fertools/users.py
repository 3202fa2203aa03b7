"""Who uses a FER Lab server, and how much of it each user may take.

A single-user FER Lab (a laptop, a projector in front of a class) has one user,
:data:`LOCAL_USER`, who is also the teacher, and no quotas beyond ``FERLAB_MAX_JOBS``.
A hosted classroom (``FERLAB_HOSTED=1``, see :func:`hosted`) has one :class:`User` per login
or per browser, and the :class:`Quotas` below, which :mod:`fertools.jobs` and the app enforce.
A teacher sets them in the environment before starting the server:

=============================  =======  =====================================================
Variable                       Default  What
=============================  =======  =====================================================
``FERLAB_MAX_RUNS_PER_USER``   2        runs one user may have queued or training at once
``FERLAB_MAX_SWEEP_RUNS``      4        runs in one sweep (a sweep may fill a user's queue
                                        up to this many runs: its runs are one experiment)
``FERLAB_MAX_EPOCHS``          100      epochs of one run
``FERLAB_MAX_JOBS``            1        trainings at once on the whole server (the rest queue)
``FERLAB_MAX_UPLOAD_MB``       200      MB one browser session may upload (MB = 2**20 bytes)
``FERLAB_MAX_USER_DISK_MB``    500      MB of disk all runs of one user may take
=============================  =======  =====================================================

A value that is not a whole number of at least 1 is ignored (the default holds, and the server
log says so). Quotas are read when asked, so a restarted server, or a test's ``monkeypatch``,
picks up a new value. They bind the teacher too: the teacher is who sets them.

This module imports neither TensorFlow nor Streamlit.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

from fertools.constants import hosted

log = logging.getLogger(__name__)

MiB = 1 << 20
#: A user id: lower-case letters, digits and inner hyphens. It names a folder
#: (``runs/_datasets/<id>/``), so nothing else may get in.
_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
#: Hex digits of the hash in a user id: 64 bits, so two people never share an id by chance.
_HASH_DIGITS = 16


def is_user_id(value: object) -> bool:
    """Whether ``value`` is a well-formed user id (a safe slug of at most 64 characters)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


@dataclass(frozen=True)
class User:
    """One person using FER Lab.

    ``id`` is a slug (see :func:`is_user_id`) stored as the owner of their runs; ``name`` is for
    display only and may hold anything a login provider sends (render it as plain text);
    ``is_teacher`` lets the user manage every run. Raises ``ValueError`` for a malformed id.
    """

    id: str
    name: str
    is_teacher: bool = False

    def __post_init__(self) -> None:
        if not is_user_id(self.id):
            raise ValueError(f"{self.id!r} is not a user id (lower-case letters, digits and hyphens).")


#: The one user of a single-user FER Lab; no hosted user can get this id (theirs end in a hash).
LOCAL_USER = User("local", "Local user", is_teacher=True)


def _slug(text: str, limit: int = 24) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def _digest(domain: str, key: str) -> str:
    return hashlib.sha256(f"{domain}\0{key}".encode()).hexdigest()[:_HASH_DIGITS]


def logged_in(subject: str, name: str = "", hint: str = "") -> User:
    """The user a login provider vouches for.

    ``subject`` tells them from everyone else (the provider's issuer and subject, or their
    email); ``hint`` (an email) gives the id a readable start and ``name`` is shown. The id
    ends in a hash of the whole subject, so ``a.b@x.org`` and ``a-b@x.org`` stay two users.
    Raises ``ValueError`` for an empty subject.
    """
    subject = subject.strip()
    if not subject:
        raise ValueError("The login gave no subject or email to tell this user from others.")
    readable = _slug((hint or subject).split("@", 1)[0]) or "user"
    display = " ".join(str(name or hint or readable).split())[:80] or readable
    return User(f"{readable}-{_digest('login', subject)}", display)


def anonymous(token: str) -> User:
    """The anonymous user who holds ``token`` (a secret kept by their browser).

    The id is a hash of the token, so it can be shown and stored without giving the token away.
    """
    digest = _digest("guest", token)
    return User(f"guest-{digest}", f"Guest {digest[:4]}")


# --- quotas ----------------------------------------------------------------------------------


class QuotaError(ValueError):
    """A request over a class quota; the message is one sentence naming it and how to free it."""


@functools.cache
def _warn_bad_value(name: str, value: str, default: int) -> None:
    # Once per bad value, not on every page rerun or queue poll.
    log.warning("%s=%r is not a whole number of at least 1; using %d.", name, value, default)


def env_int(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """The whole number >= 1 in the environment variable ``name``, or ``default``."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        _warn_bad_value(name, raw, default)
        return default
    return value


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _mb(size: int) -> str:
    return f"{size / MiB:,.1f} MB"


@dataclass(frozen=True)
class Quotas:
    """The class limits of a hosted server (see the module docstring for their variables)."""

    max_runs_per_user: int = 2
    max_sweep_runs: int = 4
    max_epochs: int = 100
    max_jobs: int = 1
    max_upload_mb: int = 200
    max_user_disk_mb: int = 500

    #: The environment variable of each field.
    VARIABLES: ClassVar[dict[str, str]] = {
        "max_runs_per_user": "FERLAB_MAX_RUNS_PER_USER",
        "max_sweep_runs": "FERLAB_MAX_SWEEP_RUNS",
        "max_epochs": "FERLAB_MAX_EPOCHS",
        "max_jobs": "FERLAB_MAX_JOBS",
        "max_upload_mb": "FERLAB_MAX_UPLOAD_MB",
        "max_user_disk_mb": "FERLAB_MAX_USER_DISK_MB",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Quotas:
        """The quotas in ``environ`` (default ``os.environ``); a bad value falls back to its default."""
        return cls(
            **{
                field.name: env_int(cls.VARIABLES[field.name], field.default, environ)
                for field in fields(cls)
            }
        )

    def _limit(self, field: str) -> str:
        return f"the class limit, {self.VARIABLES[field]}={getattr(self, field)}"

    def check_epochs(self, epochs: int) -> None:
        """Refuse a run of more than ``max_epochs`` epochs."""
        if epochs > self.max_epochs:
            raise QuotaError(
                f"A run may train at most {self.max_epochs} epochs on this server, not {epochs} "
                f"({self._limit('max_epochs')}): choose fewer epochs."
            )

    def check_sweep(self, runs: int) -> None:
        """Refuse a sweep of more than ``max_sweep_runs`` runs."""
        if runs > self.max_sweep_runs:
            raise QuotaError(
                f"A sweep of {_runs(runs)} is more than this server allows "
                f"({self._limit('max_sweep_runs')}): choose fewer values."
            )

    def check_runs(self, active: int, adding: int = 1, *, sweep: bool = False) -> None:
        """Refuse ``adding`` more runs to a user who has ``active`` runs queued or training.

        A single run needs ``active < max_runs_per_user``. A sweep's runs are one experiment: it
        may fill the user's queue up to ``max(max_runs_per_user, max_sweep_runs)`` runs.
        """
        if not sweep:
            if active + adding > self.max_runs_per_user:
                raise QuotaError(
                    f"You already have {_runs(active)} queued or training "
                    f"({self._limit('max_runs_per_user')}): cancel one or wait for it to finish."
                )
            return
        field = "max_sweep_runs" if self.max_sweep_runs > self.max_runs_per_user else "max_runs_per_user"
        if active + adding > getattr(self, field):
            raise QuotaError(
                f"This sweep would give you {_runs(active + adding)} queued or training "
                f"({self._limit(field)}): cancel some of your runs, wait for them to finish, "
                "or choose fewer values."
            )

    def check_upload(self, used: int, adding: int) -> None:
        """Refuse an upload of ``adding`` bytes in a session that already uploaded ``used`` bytes."""
        if used + adding > self.max_upload_mb * MiB:
            raise QuotaError(
                f"This upload would bring what you uploaded in this session to {_mb(used + adding)} "
                f"({self._limit('max_upload_mb')}): reload the page to start a new session "
                "(your runs stay), or upload a smaller file."
            )

    def check_disk(self, used: int) -> None:
        """Refuse a new run to a user whose runs already take ``used`` bytes of disk or more."""
        if used >= self.max_user_disk_mb * MiB:
            raise QuotaError(
                f"Your runs already take {_mb(used)} of disk ({self._limit('max_user_disk_mb')}): "
                "delete some of your runs to free space."
            )


__all__ = [
    "LOCAL_USER",
    "QuotaError",
    "Quotas",
    "User",
    "anonymous",
    "env_int",
    "hosted",
    "is_user_id",
    "logged_in",
]
