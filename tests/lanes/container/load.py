"""A mixed load that keeps a ledger, for the container lane's fault tests (test_faults.py) and the soak
(bench/soak.py): ``concurrency`` workers, each a loop of LibreChat's calls against one URL (the
balancer) — uploads, downloads of what was uploaded, runs reading an upload, new Python sessions,
continued Python sessions that keep a variable, bash and JavaScript runs.

Every answer is checked (a wrong one is never acceptable, whatever the fault), and the ledger keeps what
the service acknowledged: a 200 upload (its bytes' digest) and a 200 run of a continued session (the
number it appended to the session's list ``seen``). ``verify`` then reads all of it back, through the
balancer, so from any replica. A call that failed may or may not have taken effect (a replica can die
after saving a session's state and before answering): the session's list may hold such a number, but
never one that was not sent, and always every acknowledged one, in order.
"""

from __future__ import annotations

import ast
import hashlib
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx

# How a request ended. Only OK and RETRYABLE (a 503, or the connection failed or was cut) are
# acceptable under a fault; BUSY (409: another call holds the session) never happens in the load
# itself, whose sessions each belong to one worker.
OK, RETRYABLE, BUSY, UNEXPECTED, WRONG, TIMEOUT = "ok", "retryable", "busy", "unexpected", "wrong", "timeout"
ACCEPTABLE = frozenset({OK, RETRYABLE})
# One run's limit: a session's lock lasts this + 60 s when its replica dies in the middle of the run.
RUN_TIMEOUT_MS = 10_000
REQUEST_TIMEOUT_S = 60.0
CALLS_PER_SESSION = 6  # then a worker starts a new session (the old one stays in the ledger)
SESSIONS_PER_WORKER = 2
REFUSED_PAUSE_S = 0.25  # a worker's pause after a refused call
UPLOAD_SIZES = (1_000, 20_000, 200_000)
WEIGHTS = {
    "upload": 3,
    "download": 3,
    "run_with_file": 1,
    "python_new": 2,
    "python_continued": 4,
    "bash": 2,
    "js": 2,
}


@dataclass(frozen=True)
class Outcome:
    op: str
    kind: str
    started: float  # time.monotonic()
    ended: float
    detail: str  # the status, or the error, for a failed or wrong call


@dataclass(frozen=True)
class Upload:
    session_id: str
    file_id: str
    name: str
    digest: str  # sha256 of the bytes
    size: int


@dataclass
class KeptSession:
    """A continued Python session: the numbers its calls appended to ``seen``."""

    session_id: str
    acked: list[int] = field(default_factory=list)  # those whose call answered 200, in order
    sent: set[int] = field(default_factory=set)  # every number a call carried, answered or not
    calls: int = 0
    uncertain: bool = False  # a call failed: it may have run, and its replica may hold the lock


@dataclass
class Ledger:
    uploads: list[Upload] = field(default_factory=list)
    sessions: list[KeptSession] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def since(self, moment: float) -> list[Outcome]:
        with self.lock:
            return [outcome for outcome in self.outcomes if outcome.ended >= moment]

    def counts(self, outcomes: list[Outcome] | None = None) -> Counter[str]:
        with self.lock:
            chosen = self.outcomes if outcomes is None else outcomes
            return Counter(outcome.kind for outcome in chosen)

    def bad(self, outcomes: list[Outcome] | None = None) -> list[Outcome]:
        with self.lock:
            chosen = self.outcomes if outcomes is None else outcomes
            return [outcome for outcome in chosen if outcome.kind not in ACCEPTABLE]


class Refused(Exception):
    """A call ended otherwise than with the answer it expects; ``kind`` says how."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def failure_of(response: httpx.Response) -> Refused:
    """How a non-200 answer counts: a 503 is the retryable refusal (the API's own while Redis or S3 is
    away, the balancer's while no replica is ready or when one died mid-request)."""
    text = response.text[:300]
    if response.status_code == 503:
        return Refused(RETRYABLE, f"503 {text}")
    if response.status_code == 409 and "session_busy" in text:
        return Refused(BUSY, f"409 {text}")
    return Refused(UNEXPECTED, f"{response.status_code} {text}")


def exec_body(response: httpx.Response) -> dict[str, Any]:
    """A run's answer. A run streamed past its first seconds answers 200 and may then carry an error."""
    if response.status_code != 200:
        raise failure_of(response)
    body: dict[str, Any] = response.json()
    if "error" in body:
        kinds = {"service_unavailable": RETRYABLE, "conflict": BUSY}
        raise Refused(kinds.get(body.get("error_type", ""), UNEXPECTED), f"200 with an error: {str(body)[:300]}")
    return body


def expect(condition: bool, detail: str) -> None:
    if not condition:
        raise Refused(WRONG, detail)


class Calls:
    """LibreChat's calls, each checking its answer; one client (connection pool) per thread."""

    def __init__(self, client: httpx.Client, ledger: Ledger, rng: random.Random) -> None:
        self.client = client
        self.ledger = ledger
        self.rng = rng

    def run(self, lang: str, code: str, **extra: Any) -> dict[str, Any]:
        payload = {"lang": lang, "code": code, "timeout": RUN_TIMEOUT_MS, **extra}
        return exec_body(self.client.post("/exec", json=payload))

    def upload(self) -> None:
        data = self.rng.randbytes(self.rng.choice(UPLOAD_SIZES))
        name = f"load-{self.rng.getrandbits(32):08x}.bin"
        response = self.client.post("/upload", files={"file": (name, data)}, data={"kind": "user", "id": "load"})
        if response.status_code != 200:
            raise failure_of(response)
        body = response.json()
        file = body["files"][0]
        digest = hashlib.sha256(data).hexdigest()
        with self.ledger.lock:
            self.ledger.uploads.append(Upload(body["storage_session_id"], file["fileId"], name, digest, len(data)))

    def pick_upload(self) -> Upload | None:
        with self.ledger.lock:
            return self.rng.choice(self.ledger.uploads) if self.ledger.uploads else None

    def download(self, upload: Upload | None = None) -> None:
        upload = upload or self.pick_upload()
        if upload is None:
            return self.upload()
        response = self.client.get(f"/download/{upload.session_id}/{upload.file_id}")
        if response.status_code == 404:
            raise Refused(WRONG, f"acknowledged upload {upload} is gone: 404 {response.text[:200]}")
        if response.status_code != 200:
            raise failure_of(response)
        digest = hashlib.sha256(response.content).hexdigest()
        expect(digest == upload.digest, f"{upload} downloaded {len(response.content)} other bytes")
        return None

    def run_with_file(self) -> None:
        upload = self.pick_upload()
        if upload is None:
            return self.upload()
        ref = {"id": upload.file_id, "storage_session_id": upload.session_id, "name": upload.name}
        code = f"import hashlib\nprint(hashlib.sha256(open({upload.name!r}, 'rb').read()).hexdigest())"
        body = self.run("py", code, files=[ref])
        expect(
            body["stdout"] == f"{upload.digest}\n", f"{upload} read in a run as {body['stdout']!r} {body['stderr']!r}"
        )
        return None

    def python_new(self) -> None:
        number = self.rng.randrange(10**6)
        body = self.run("py", f"print({number} * {number})")
        expect(body["stdout"] == f"{number * number}\n", f"py printed {body['stdout']!r} {body['stderr']!r}")

    def bash(self) -> None:
        a, b = self.rng.randrange(10**4), self.rng.randrange(10**4)
        body = self.run("bash", f"echo $(({a} * {b}))")
        expect(body["stdout"] == f"{a * b}\n", f"bash printed {body['stdout']!r} {body['stderr']!r}")

    def js(self) -> None:
        a, b = self.rng.randrange(10**4), self.rng.randrange(10**4)
        body = self.run("js", f"console.log({a} * {b})")
        expect(body["stdout"] == f"{a * b}\n", f"js printed {body['stdout']!r} {body['stderr']!r}")

    def continue_session(self, session: KeptSession | None, sessions: list[KeptSession]) -> None:
        """One call of a kept session (a new one when ``session`` is None): append a fresh number to
        ``seen`` and check the list printed holds every acknowledged number, in order, and no stranger."""
        number = self.rng.randrange(10**9)
        code = f"try:\n    seen\nexcept NameError:\n    seen = []\nseen.append({number})\nprint(seen)"
        if session is not None:
            session.sent.add(number)
            session.calls += 1
        try:
            extra = {"session_id": session.session_id} if session is not None else {}
            body = self.run("py", code, **extra)
        except (Refused, httpx.TransportError):
            if session is not None:
                session.uncertain = True
            raise
        if session is None:
            session = KeptSession(body["session_id"], sent={number}, calls=1)
            with self.ledger.lock:
                self.ledger.sessions.append(session)
            sessions.append(session)
        check_seen(session, body, last=number)
        session.acked.append(number)


def check_seen(session: KeptSession, body: dict[str, Any], last: int | None = None) -> None:
    expect(body["session_id"] == session.session_id, f"{session.session_id} answered as {body['session_id']}")
    try:
        seen = ast.literal_eval(body["stdout"].strip())
    except (ValueError, SyntaxError):
        raise Refused(WRONG, f"{session.session_id}: printed {body['stdout']!r} {body['stderr']!r}") from None
    expect(isinstance(seen, list), f"{session.session_id}: printed {body['stdout']!r}")
    where = {number: index for index, number in enumerate(seen)}
    missing = [number for number in session.acked if number not in where]
    expect(not missing, f"{session.session_id}: acknowledged {missing} lost, kept {seen}, stderr {body['stderr']!r}")
    order = [where[number] for number in session.acked]
    expect(order == sorted(order), f"{session.session_id}: acknowledged {session.acked} out of order in {seen}")
    strangers = [number for number in seen if number not in session.sent]
    expect(not strangers, f"{session.session_id}: {strangers} were never sent, kept {seen}")
    expect(len(set(seen)) == len(seen), f"{session.session_id}: a call ran twice: {seen}")
    if last is not None:
        expect(seen[-1] == last, f"{session.session_id}: printed {seen}, not ending with {last}")


def timed(ledger: Ledger, op: str, call: Callable[[], None]) -> str:
    """Run one call and record how it ended."""
    started = time.monotonic()
    kind, detail = OK, ""
    try:
        call()
    except Refused as refused:
        kind, detail = refused.kind, refused.detail
    except httpx.TimeoutException as error:
        kind, detail = TIMEOUT, f"{type(error).__name__}: {error}"
    except httpx.TransportError as error:  # refused, reset, or cut mid-answer
        kind, detail = RETRYABLE, f"{type(error).__name__}: {error}"
    except (KeyError, ValueError) as error:  # a 200 whose body is not what the API answers
        kind, detail = WRONG, f"{type(error).__name__}: {error}"
    ledger.record(Outcome(op, kind, started, time.monotonic(), detail))
    return kind


@dataclass
class Target:
    url: str
    api_key: str
    verify: ssl.SSLContext | bool = True

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"x-api-key": self.api_key},
            timeout=REQUEST_TIMEOUT_S,
            verify=self.verify,
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
        )


class MixedLoad:
    """``concurrency`` threads running the mix until ``stop``; usable as a context manager."""

    def __init__(self, target: Target, ledger: Ledger, concurrency: int = 8, seed: str = "load") -> None:
        self.target = target
        self.ledger = ledger
        self.concurrency = concurrency
        self.seed = seed
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> MixedLoad:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.stopping.clear()
        self.threads = [
            threading.Thread(target=self.worker, args=(index,), name=f"load-{index}", daemon=True)
            for index in range(self.concurrency)
        ]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Let each worker finish its call in flight, then return."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(REQUEST_TIMEOUT_S + 30)

    def worker(self, index: int) -> None:
        rng = random.Random(f"{self.seed}-{index}")
        ops = list(WEIGHTS)
        weights = [WEIGHTS[op] for op in ops]
        sessions: list[KeptSession] = []
        with self.target.client() as client:
            calls = Calls(client, self.ledger, rng)
            while not self.stopping.is_set():
                op = rng.choices(ops, weights)[0]
                if op == "python_continued":
                    # A session whose call failed is left alone: its call may still hold the session's
                    # lock on a dead replica. verify() reads it back later.
                    sessions[:] = [s for s in sessions if not s.uncertain and s.calls < CALLS_PER_SESSION]
                    session = rng.choice(sessions) if len(sessions) >= SESSIONS_PER_WORKER else None
                    kind = timed(self.ledger, op, partial(calls.continue_session, session, sessions))
                else:
                    kind = timed(self.ledger, op, getattr(calls, op))
                if kind != OK:
                    time.sleep(REFUSED_PAUSE_S)  # as a client does before it tries again


@dataclass
class Verified:
    uploads: int
    sessions: int
    seconds: float
    failures: list[str]  # what was never read back as acknowledged (or read back wrong)
    retried: Counter[str]  # the refusals met on the way, by kind (busy: a dead replica's lock)


def verify(target: Target, ledger: Ledger, deadline_s: float, concurrency: int = 8) -> Verified:
    """Read back every acknowledged upload (byte-identical) and every kept session (its acknowledged
    numbers), retrying a refusal (503, a connection error, a session still locked by a dead replica's
    call) until ``deadline_s``; a wrong answer fails at once."""
    began = time.monotonic()
    deadline = began + deadline_s
    with ledger.lock:
        uploads = list(ledger.uploads)
        sessions = [session for session in ledger.sessions if session.acked]
    retried: Counter[str] = Counter()
    failures: list[str] = []
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = target.client()
        found: httpx.Client = local.client
        return found

    def attempt(check: Callable[[Calls], None], what: str) -> None:
        while True:
            try:
                check(Calls(client(), Ledger(), random.Random(0)))
                return
            except Refused as refused:
                if refused.kind in (WRONG, UNEXPECTED) or time.monotonic() > deadline:
                    failures.append(f"{what}: {refused.kind} {refused.detail}")
                    return
                retried[refused.kind] += 1
            except httpx.TransportError as error:
                if time.monotonic() > deadline:
                    failures.append(f"{what}: {type(error).__name__}: {error}")
                    return
                retried[RETRYABLE] += 1
            time.sleep(0.5)

    def read_session(session: KeptSession) -> Callable[[Calls], None]:
        def check(calls: Calls) -> None:
            check_seen(session, calls.run("py", "print(seen)", session_id=session.session_id))

        return check

    def read_upload(upload: Upload) -> Callable[[Calls], None]:
        return lambda calls: calls.download(upload)

    jobs = [(read_upload(upload), f"upload {upload.file_id}") for upload in uploads]
    jobs += [(read_session(session), f"session {session.session_id}") for session in sessions]
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in pool.map(lambda job: attempt(*job), jobs):
            pass
    return Verified(len(uploads), len(sessions), time.monotonic() - began, failures, retried)


def windows(outcomes: list[Outcome], since: float) -> Iterator[tuple[str, float]]:
    """For a fault at ``since``: the seconds after it until the last failed call ended, per kind."""
    for kind in sorted({outcome.kind for outcome in outcomes if outcome.kind != OK}):
        yield kind, max(outcome.ended for outcome in outcomes if outcome.kind == kind) - since
