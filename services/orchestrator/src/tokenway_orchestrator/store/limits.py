"""Per-key limit arithmetic, free of any database: the store loads a key's state, calls these, saves it.

Rates (requests and tokens per minute) are GCRA meters (a leaky bucket kept as one number, the
"theoretical arrival time" `tat`: when the meter would be empty). A request is admitted when the meter
is empty (`tat <= now`), and then adds its cost (`cost * 60 / limit` seconds). So over any window of W
seconds a key gets at most `limit * W / 60` plus one request's cost: the limit is enforced per second,
not per calendar minute (OpenAI quantizes its limits the same way), and a burst at the start of a
minute cannot double it. Requests get a tolerance of one interval (at most 1 s): a request that arrives
a little early still passes, so clients that retry a little late do not lose their turn (without it a
hammering client got ~4 % less than its limit); it allows one extra request per window, never a doubling.
Tokens are reserved at admission (prompt + max_tokens) and what was not used is given back when the
request settles.

Concurrency counts live leases; a quota is a per-period counter of settled tokens plus the live leases'
reservations, so a request is admitted only if its reservation fits what is left.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from .keys import Limits

# which limit refused, as the error's reason says it
REQUESTS, TOKENS, CONCURRENCY, QUOTA = ("requests_per_minute", "tokens_per_minute", "concurrent_requests",
                                        "token_quota")


@dataclasses.dataclass
class MeterState:
    """One key's meters as stored (limiter_state row)."""

    request_tat: float = 0.0
    token_tat: float = 0.0
    quota_period_start: float = 0.0
    quota_used: int = 0


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: str = ""  # the limit that refused (REQUESTS, TOKENS, CONCURRENCY, QUOTA)
    retry_after: float = 0.0  # seconds until it may pass
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # OpenAI's x-ratelimit-* headers


def period_start(now: float, period: str) -> float:
    """The start (UTC) of the quota period holding `now`."""
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    t = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        t = t.replace(day=1)
    return t.timestamp()


def period_end(start: float, period: str) -> float:
    t = dt.datetime.fromtimestamp(start, dt.UTC)
    if period == "day":
        return (t + dt.timedelta(days=1)).timestamp()
    return (t.replace(year=t.year + 1, month=1) if t.month == 12 else t.replace(month=t.month + 1)).timestamp()


def _duration(seconds: float) -> str:
    """OpenAI's reset format: 1s, 6m0s, 1h2m3s, 20ms."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    s = math.ceil(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{sec}s"


def _meter(tat: float, now: float, limit: int) -> tuple[int, float]:
    """(remaining of a minute's budget, seconds until the meter is empty)."""
    debt = max(tat - now, 0.0)
    return max(0, limit - math.ceil(debt * limit / 60.0 - 1e-9)), debt


def headers(lim: Limits, st: MeterState, now: float) -> tuple[tuple[str, str], ...]:
    out = []
    if lim.requests_per_minute:
        left, reset = _meter(st.request_tat, now, lim.requests_per_minute)
        out += [("x-ratelimit-limit-requests", str(lim.requests_per_minute)),
                ("x-ratelimit-remaining-requests", str(left)), ("x-ratelimit-reset-requests", _duration(reset))]
    if lim.tokens_per_minute:
        left, reset = _meter(st.token_tat, now, lim.tokens_per_minute)
        out += [("x-ratelimit-limit-tokens", str(lim.tokens_per_minute)),
                ("x-ratelimit-remaining-tokens", str(left)), ("x-ratelimit-reset-tokens", _duration(reset))]
    return tuple(out)


def request_tolerance(requests_per_minute: int) -> float:
    """How early (seconds) a request may come and still pass: one interval, at most 1 s."""
    return min(60.0 / requests_per_minute, 1.0)


def roll_period(lim: Limits, st: MeterState, now: float) -> None:
    start = period_start(now, lim.quota_period)
    if st.quota_period_start != start:
        st.quota_period_start, st.quota_used = start, 0


def admit_request(lim: Limits, st: MeterState, now: float, live: int, reserved: int) -> Decision:
    """Phase one, before any tokenizer work: the request rate, concurrency, and a quota already spent.
    `live`/`reserved`: the key's live leases and their reserved tokens. Updates `st` when admitted."""
    roll_period(lim, st, now)
    if lim.token_quota and st.quota_used + reserved >= lim.token_quota:
        return _quota_refusal(lim, st, now, reserved)
    if lim.concurrent_requests and live >= lim.concurrent_requests:
        return Decision(False, CONCURRENCY, 1.0, f"Concurrency limit reached: {lim.concurrent_requests} "
                        "requests of this key are already running", headers(lim, st, now))
    if lim.requests_per_minute:
        wait = st.request_tat - now - request_tolerance(lim.requests_per_minute)
        if wait > 0:
            return Decision(False, REQUESTS, wait, f"Rate limit reached: {lim.requests_per_minute} requests per "
                            f"minute; retry in {wait:.2f}s", headers(lim, st, now))
        st.request_tat = max(st.request_tat, now) + 60.0 / lim.requests_per_minute
    return Decision(True, headers=headers(lim, st, now))


def reserve_tokens(lim: Limits, st: MeterState, now: float, tokens: int, reserved_others: int) -> Decision:
    """Phase two, once the prompt is tokenized: `tokens` = prompt + the most it may generate."""
    roll_period(lim, st, now)
    if lim.token_quota and st.quota_used + reserved_others + tokens > lim.token_quota:
        return _quota_refusal(lim, st, now, reserved_others, tokens)
    if lim.tokens_per_minute:
        wait = st.token_tat - now
        if wait > 0:
            return Decision(False, TOKENS, wait, f"Rate limit reached: {lim.tokens_per_minute} tokens per minute; "
                            f"retry in {wait:.2f}s", headers(lim, st, now))
        st.token_tat = max(st.token_tat, now) + tokens * 60.0 / lim.tokens_per_minute
    return Decision(True, headers=headers(lim, st, now))


def settle(lim: Limits, st: MeterState, now: float, reserved: int, used: int) -> None:
    """Gives back what a request reserved and did not use, and counts what it used against the quota."""
    if lim.tokens_per_minute and reserved > used:
        st.token_tat -= (reserved - used) * 60.0 / lim.tokens_per_minute
    roll_period(lim, st, now)
    st.quota_used += used


def _quota_refusal(lim: Limits, st: MeterState, now: float, reserved: int, tokens: int = 0) -> Decision:
    left = max(0, lim.token_quota - st.quota_used - reserved)
    wait = period_end(st.quota_period_start, lim.quota_period) - now
    want = f"; this request needs up to {tokens} (prompt + max_tokens)" if tokens else ""
    return Decision(False, QUOTA, wait, f"Token quota reached: {lim.token_quota} tokens per {lim.quota_period}, "
                    f"{left} left{want}", headers(lim, st, now))
