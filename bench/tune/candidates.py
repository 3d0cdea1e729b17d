"""The candidates: worker class, workers, threads or greenlets, and pool,
generated from the app container's CPU quota and, with a database, the
connection budget (serving/budget.py). They depend on nothing else, so one
set of containers serves any load profile.

- workers around the core count: the cores, and gunicorn's own 2 x cores + 1
  (the project's default); the fine pass tries one fewer and one more. Never
  more than 2 x cores + 1: past it, a CPU quota only adds processes that wait
  for it (memory, context switches), never throughput.
- gthread threads and gevent greenlets double: the fine pass halves and
  doubles the best's.
- the database pool: the project's default per class (serving/settings.py:
  1 for sync, the threads for gthread, 10 for gevent), and for gevent, whose
  pool is what bounds a database-bound endpoint, twice and half that.
- a candidate whose connections, over every replica, doubled for a
  start-first deploy, plus the reserve, exceed what the server allows is
  never tried (serving/budget.py's Budget, the sum `make up` checks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from serving.budget import Budget
from serving.settings import GEVENT_DATABASE_POOL

CLASSES = ("sync", "gthread", "gevent")
#: gunicorn's default threads for the project's gthread (serving/settings.py).
THREADS = (4, 16)
MAX_THREADS = 64
#: gunicorn's worker_connections for gevent: its default, and a quarter.
GREENLETS = (1000,)
MIN_GREENLETS, MAX_GREENLETS = 125, 4000
MAX_POOL = 100


@dataclass(frozen=True)
class Candidate:
    worker_class: str
    workers: int
    #: gthread: threads per worker; 1 otherwise.
    threads: int = 1
    #: gevent: greenlets per worker (GUNICORN_WORKER_CONNECTIONS); 0 otherwise.
    greenlets: int = 0
    #: Database connections per worker (DATABASE_POOL_SIZE); 0 without a database.
    pool: int = 0

    @property
    def key(self) -> str:
        """A Compose service name's part: lower case, digits and dashes."""
        per_worker = {"sync": "", "gthread": f"-t{self.threads}", "gevent": f"-c{self.greenlets}"}[self.worker_class]
        return f"{self.worker_class}-w{self.workers}{per_worker}" + (f"-p{self.pool}" if self.pool else "")

    @property
    def label(self) -> str:
        per_worker = {
            "sync": "",
            "gthread": f" × {self.threads} threads",
            "gevent": f" × {self.greenlets} greenlets",
        }[self.worker_class]
        pool = f", pool {self.pool}" if self.pool else ""
        workers = f"{self.workers} worker{'' if self.workers == 1 else 's'}"
        return f"{self.worker_class}, {workers}{per_worker}{pool}"

    @property
    def concurrency(self) -> int:
        """Requests one replica runs at once."""
        return self.workers * {"sync": 1, "gthread": self.threads, "gevent": self.greenlets}[self.worker_class]

    @property
    def connections(self) -> int:
        """Database connections one replica opens at most."""
        return self.workers * self.pool

    def simplicity(self) -> tuple[int, int, int, int]:
        """Smaller is simpler: the class first (sync over gthread over gevent:
        a class is a bigger change than a count, and gevent brings its
        monkey-patching), then fewer workers, then fewer threads or
        greenlets, then the smaller pool."""
        return (CLASSES.index(self.worker_class), self.workers, self.threads + self.greenlets, self.pool)

    def environment(self) -> dict[str, str]:
        """The settings, as .env lines would give them (serving/settings.py's
        names). GUNICORN_THREADS only for gthread: the settings refuse it
        with the others."""
        env = {"WORKER_CLASS": self.worker_class, "WEB_CONCURRENCY": str(self.workers)}
        if self.worker_class == "gthread":
            env["GUNICORN_THREADS"] = str(self.threads)
        if self.worker_class == "gevent":
            env["GUNICORN_WORKER_CONNECTIONS"] = str(self.greenlets)
        if self.pool:
            env["DATABASE_POOL_SIZE"] = str(self.pool)
        return env

    def as_dict(self) -> dict:
        return {**asdict(self), "key": self.key, "label": self.label, "environment": self.environment()}


@dataclass(frozen=True)
class Limits:
    """What the candidates must stay within."""

    #: The app container's CPU quota, in CPUs (Compose `cpus:`).
    cpus: float
    #: With a database: the server's limits and the deployment's replicas
    #: and reserve, as serving/budget.py's Budget takes them; None without.
    budget: Budget | None = None

    @property
    def cores(self) -> int:
        return max(1, math.ceil(self.cpus))

    @property
    def max_workers(self) -> int:
        return 2 * self.cores + 1

    def fits(self, candidate: Candidate) -> bool:
        if not 1 <= candidate.workers <= self.max_workers:
            return False
        if self.budget is None:
            return candidate.pool == 0
        if candidate.pool < 1:
            return False
        return replace(self.budget, workers=candidate.workers, per_worker=candidate.pool).fits()


def _default_pool(worker_class: str, threads: int) -> int:
    return {"sync": 1, "gthread": threads, "gevent": GEVENT_DATABASE_POOL}[worker_class]


def _with_pools(candidate: Candidate, database: bool, quick: bool) -> list[Candidate]:
    if not database:
        return [candidate]
    default = _default_pool(candidate.worker_class, candidate.threads)
    pools = [default]
    if candidate.worker_class == "gevent":
        pools += [default * 2] + ([] if quick else [max(1, default // 2)])
    return [replace(candidate, pool=pool) for pool in dict.fromkeys(pools)]


def coarse(limits: Limits, quick: bool = False) -> list[Candidate]:
    """The first pass: each class at the core count and at 2 x cores + 1,
    gthread with 4 and 16 threads, gevent with its default greenlets; with a
    database, each with its default pool (gevent also twice and half of it);
    every one within the limits.

    `quick` (CI's short mode): every class at the core count only, but sync
    also at 2 x cores + 1, so that a CPU-bound profile still chooses between
    the two worker counts; gthread with 16 threads only; gevent's pool at
    its default and twice it."""
    cores, most = limits.cores, limits.max_workers
    database = limits.budget is not None
    workers = [cores] if quick else sorted({cores, most})
    shapes = [Candidate("sync", w) for w in sorted({cores, most})]
    threads = THREADS[-1:] if quick else THREADS
    shapes += [Candidate("gthread", w, threads=t) for w in workers for t in threads]
    shapes += [Candidate("gevent", w, greenlets=g) for w in workers for g in GREENLETS]
    out = [c for shape in shapes for c in _with_pools(shape, database, quick)]
    return [c for c in dict.fromkeys(out) if limits.fits(c)]


def fine(best: Candidate, limits: Limits, tried: set[Candidate]) -> list[Candidate]:
    """The second pass: the best's neighbours not tried yet, within the
    limits: one worker fewer and one more; half and twice its threads or
    greenlets; with a database, half and twice its pool."""
    out = [replace(best, workers=best.workers - 1), replace(best, workers=best.workers + 1)]
    if best.worker_class == "gthread":
        for threads in (best.threads // 2, best.threads * 2):
            if 1 <= threads <= MAX_THREADS:
                # The pool follows the threads, as the project's default does.
                pool = threads if best.pool else 0
                out.append(replace(best, threads=threads, pool=pool))
    if best.worker_class == "gevent":
        for greenlets in (best.greenlets // 2, best.greenlets * 2):
            if MIN_GREENLETS <= greenlets <= MAX_GREENLETS:
                out.append(replace(best, greenlets=greenlets))
    if best.pool:
        for pool in (best.pool // 2, best.pool * 2):
            if 1 <= pool <= MAX_POOL and not (best.worker_class == "sync" and pool != 1):
                out.append(replace(best, pool=pool))
    return [c for c in dict.fromkeys(out) if c not in tried and limits.fits(c)]
