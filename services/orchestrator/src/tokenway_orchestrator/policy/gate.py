"""One request's way through the policy, as a Ticket: opened once the caller is known (the model it may
use, its key's limits, the orchestrator's admission queue), told the prompt's size (tokens reserved),
told what the client was shown, and closed exactly once with the request's usage record.

Every request of an authenticated caller (or every request, with auth off) ends in exactly one record:
completed, stopped, cancelled, failed, or rejected by a limit. A completed request's record is durable
before its final response is sent; a cancelled one's is written without anyone waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tokenway_common import errors

from ..store import SqlStore, UsageRecord
from ..store import limits as meters
from ..store.sql import Settlement
from .admission import PRIORITIES, Admission
from .auth import Caller
from .usage import UsageWriter

log = logging.getLogger("tokenway.orchestrator.gate")
LEASE_SECONDS = 30.0  # a lease its holder stopped renewing (a crashed orchestrator) frees its slot after this
RENEW_SECONDS = 10.0
PRIORITY_HEADER = "x-tokenway-priority"

_REASONS = {meters.REQUESTS: "REQUEST_RATE_LIMITED", meters.TOKENS: "TOKEN_RATE_LIMITED",
            meters.CONCURRENCY: "CONCURRENCY_LIMITED", meters.QUOTA: "TOKEN_QUOTA_EXCEEDED"}
LIMIT_REASONS = tuple(_REASONS.values())


async def store_call(fn, *args):
    """A store call off the event loop; a store that fails is UNAVAILABLE (retryable), not INTERNAL."""
    try:
        return await asyncio.to_thread(fn, *args)
    except errors.TokenwayError:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver error: the store is the problem, not the request
        log.error("the store failed: %s", exc)
        raise errors.Unavailable("the key and usage store is unavailable; retry shortly", reason="STORE_UNAVAILABLE",
                                 retry_after=1.0) from exc


class Gate:
    def __init__(self, store: SqlStore, writer: UsageWriter, admission: Admission, holder: str,
                 metrics=None) -> None:
        """`metrics`: an OrchestratorMetrics (requests running, tokens, TTFT and inter-token latency)."""
        self.store, self.writer, self.admission, self.holder = store, writer, admission, holder
        self.metrics = metrics
        self._renewer: asyncio.Task | None = None
        self.leased: set[str] = set()  # this process's running requests that hold a lease

    def start(self) -> None:
        self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        await asyncio.to_thread(self.writer.close)

    async def _renew(self) -> None:
        """Keeps the leases of this process's running requests alive (and only theirs: a request whose
        settlement failed lets its lease expire)."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)  # the renewal period, not synchronisation
            if not self.leased:
                continue
            try:
                await asyncio.to_thread(self.store.renew_leases, self.holder, LEASE_SECONDS, tuple(self.leased))
            except Exception as exc:  # noqa: BLE001 - the next period retries
                log.warning("could not renew leases: %s", exc)

    def priority(self, caller: Caller, requested: str | None) -> str:
        """The key's class, or a lower one the request asks for (`x-tokenway-priority`)."""
        own = caller.key.priority if caller.key else PRIORITIES[0]
        if not requested:
            return own
        if requested not in PRIORITIES:
            raise errors.InvalidArgument(f"{PRIORITY_HEADER} must be one of {', '.join(PRIORITIES)}",
                                         reason="INVALID_PRIORITY", metadata={"param": PRIORITY_HEADER})
        if PRIORITIES.index(requested) < PRIORITIES.index(own):
            raise errors.PermissionDenied(f"This API key may use priority '{own}' or lower, not '{requested}'",
                                          reason="PRIORITY_NOT_ALLOWED", metadata={"param": PRIORITY_HEADER})
        return requested

    async def open(self, caller: Caller, model: str, request_id: str, *, priority: str | None, units: int,
                   timeout: float | None, authorized: bool = False) -> Ticket:
        """Admits a request or raises (PERMISSION_DENIED, RESOURCE_EXHAUSTED; a limit's refusal is recorded).
        `authorized`: the caller's right to `model` was checked already (the registry's route)."""
        if not authorized:
            caller.authorize(model)
        ticket = Ticket(self, caller, model, request_id, self.priority(caller, priority))
        key = caller.key
        if key is not None and key.limits.any:
            decision = await store_call(self.store.admit, key, request_id, self.holder, LEASE_SECONDS)
            ticket.headers = decision.headers
            if not decision.allowed:
                await ticket.refuse(decision)
            self.leased.add(request_id)
        try:
            ticket.units = await self.admission.acquire(ticket.priority, units, timeout)
        except errors.TokenwayError:
            await ticket.close("rejected")
            raise
        except BaseException:  # cancelled while waiting: its record, and its lease given back
            await ticket.close("cancelled", "cancelled", wait=False)
            raise
        ticket.queue_ms = (time.monotonic() - ticket.started) * 1e3
        if ticket.clock is not None:
            ticket.clock.m.running.inc()
            ticket.admitted = True
        return ticket


class Ticket:
    def __init__(self, gate: Gate, caller: Caller, model: str, request_id: str, priority: str) -> None:
        self.gate, self.caller, self.model, self.request_id, self.priority = gate, caller, model, request_id, priority
        self.started = time.monotonic()
        self.created_at = time.time()
        self.headers: tuple[tuple[str, str], ...] = ()
        self.units = 0
        self.queue_ms: float | None = None
        self.ttft_ms: float | None = None
        self.prompt_tokens = 0
        self._shown: dict[int, int] = {}  # completion tokens the client was shown, per choice
        self._finishes: dict[int, str] = {}
        self.closed = False
        self.admitted = False  # counted as running (metrics)
        self.clock = gate.metrics.model(model).clock(self.started) if gate.metrics is not None else None

    async def reserve(self, prompt_tokens: int, most_completion_tokens: int) -> None:
        """Phase two: the prompt is known; reserves prompt + the most the request may generate."""
        self.prompt_tokens = prompt_tokens
        key = self.caller.key
        if key is None or not (key.limits.tokens_per_minute or key.limits.token_quota):
            return
        decision = await store_call(self.gate.store.reserve, key, self.request_id,
                                    prompt_tokens + most_completion_tokens)
        self.headers = decision.headers
        if not decision.allowed:
            await self.refuse(decision)

    async def refuse(self, decision: meters.Decision) -> None:
        """Records the refusal (which drops the request's lease, if it has one) and raises it."""
        await self.close("rejected")
        lim = self.caller.key.limits
        raise errors.ResourceExhausted(
            decision.message, reason=_REASONS[decision.limit], retry_after=max(decision.retry_after, 0.001),
            headers=decision.headers, metadata={"limit": decision.limit, "key": self.caller.name,
                                                "value": str(getattr(lim, decision.limit))})

    def shown(self, index: int, completion_tokens: int, finish_reason: str | None = None) -> None:
        """Choice `index` has shown the client `completion_tokens` tokens so far."""
        if self.ttft_ms is None:
            self.ttft_ms = (time.monotonic() - self.started) * 1e3
        before = self._shown.get(index, 0)
        if completion_tokens > before and self.clock is not None:
            self.clock.tokens(index, completion_tokens - before)
        self._shown[index] = max(before, completion_tokens)
        if finish_reason is not None:
            self._finishes[index] = finish_reason

    def _record(self, status: str, finish_reason: str, completion_tokens: int | None) -> UsageRecord:
        completion = sum(self._shown.values()) if completion_tokens is None else completion_tokens
        if not finish_reason:
            finish_reason = ",".join(sorted(set(self._finishes.values())))
        return UsageRecord(self.request_id, self.caller.key_id, self.caller.name, self.model,
                           self.prompt_tokens if status != "rejected" else 0,
                           completion if status != "rejected" else 0, finish_reason, status, self.created_at,
                           self.queue_ms, self.ttft_ms, (time.monotonic() - self.started) * 1e3)

    async def close(self, status: str, finish_reason: str = "", *, completion_tokens: int | None = None,
                    prompt_tokens: int | None = None, wait: bool = True) -> None:
        """Ends the request once: gives back its admission, settles its limits and writes its record
        (durably before returning when `wait`; else in the background, for a caller that is gone)."""
        if self.closed:
            return
        self.closed = True
        self.gate.leased.discard(self.request_id)
        if prompt_tokens is not None:
            self.prompt_tokens = prompt_tokens
        self.gate.admission.release(self.units, self.priority)
        self.units = 0
        item = Settlement(self._record(status, finish_reason, completion_tokens), self.caller.key)
        if self.clock is not None:
            if self.admitted:
                self.clock.m.running.dec()
            self.clock.finished(item.record.prompt_tokens, item.record.completion_tokens)
        if wait:
            await self.gate.writer.write(item)
        else:
            self.gate.writer.submit(item)
