"""The load generator of `make bench`: asyncio clients that timestamp every chunk they receive.

Three clients, one request shape (a chat turn, greedy, `max_tokens` output tokens):

* `SseClient`: OpenAI's `POST /v1/chat/completions` with `"stream": true`, over raw HTTP/1.1 on asyncio
  streams (one keep-alive connection per worker, opened before the measured window; chunked or
  length-delimited bodies; `data:` events). Used for Envoy, vLLM's server and `transformers serve`.
* `ChatGrpcClient`: the orchestrator's `tokenway.v1.ChatService/StreamChatCompletion`.
* `DirectClient`: the inference service's `InferenceService/Generate` with the prompt ids the orchestrator
  would send (rendered by the tokenizer's RenderChat beforehand), the same sampling and stopping.

Each request records its start, the arrival time of every chunk that carries output (text, logprobs or
token ids), the tokens per chunk where the protocol says so (Generate: `len(token_ids)`), its output
tokens (usage, or the ids counted) and its error, if any. A level runs `requests` requests with
`concurrency` workers; `summarize` turns the records into the metrics (vLLM's benchmark_serving
definitions): TTFT = first output chunk - start; ITL = the gaps between successive output chunks of a
request, pooled; TPOT = (last chunk - first chunk) / (tokens - 1) per request. A failed request is kept
and counted, never dropped; one that finished with output tokens but no text at all (a generation of
bytes that never form a character, which some servers stream as nothing) is counted as `no_text`: its
tokens count, it has no TTFT or ITL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import time
import uuid
from collections.abc import Callable, Sequence

import grpc
from google.protobuf import struct_pb2
from tokenway.inference.v1 import inference_pb2, inference_pb2_grpc
from tokenway.v1 import chat_pb2, chat_pb2_grpc, common_pb2

MODEL_NAME = "tokenway-tiny"
WORDS = ("model server token stream batch cache prompt answer engine request latency throughput gateway "
         "replica tokenizer graph kernel memory budget queue deadline signal health router vector layer "
         "attention weight sample greedy chunk buffer socket").split()
ARRIVAL_GAP_S = 0.0005  # chunks closer than this arrived together (one read, one burst)
REQUEST_TIMEOUT_S = 300.0  # one request's deadline: a stuck server fails the request, it does not hang the bench


def prompts(n: int, seed: int = 7) -> list[str]:
    """n seeded prompts of 40-500 words: ~100-1300 prompt tokens with the embedded tokenizer."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 500))) for _ in range(n)]


@dataclasses.dataclass
class Record:
    """One request as the client saw it (times from time.perf_counter)."""

    start: float
    chunks: list[float] = dataclasses.field(default_factory=list)  # arrival of each chunk with output
    chunk_tokens: list[int] | None = None  # tokens per chunk, where the protocol tells
    tokens: int = 0  # output tokens (usage, or ids counted)
    end: float = 0.0
    error: str | None = None
    no_text: bool = False  # finished with output tokens (usage) but no text: nothing to time, not a failure


def _no_output(rec: Record) -> None:
    """A stream that ended without any output chunk: a failure, unless its usage counts output tokens (a
    generation of bytes that never form a character: some servers stream no text at all for it)."""
    if rec.error is None and not rec.chunks:
        if rec.tokens > 0:
            rec.no_text = True
        else:
            rec.error = "the stream carried no output"


@dataclasses.dataclass(frozen=True)
class Options:
    """What every request asks for."""

    max_tokens: int = 64
    ignore_eos: bool = True  # transformers serve refuses the field (HTTP 422): False omits it
    top_logprobs: int | None = None  # None: no logprobs
    model: str = MODEL_NAME


# -- OpenAI SSE over raw HTTP/1.1 -------------------------------------------------------------------


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer


class SseClient:
    """`POST {path}` with a streamed chat request; one connection per worker, reused."""

    name = "sse"

    def __init__(self, host: str, port: int, texts: Sequence[str], opts: Options,
                 path: str = "/v1/chat/completions", api_key: str = "") -> None:
        self.host, self.port, self.path = host, port, path
        self.texts, self.opts = texts, opts
        self._auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self._bodies = [self._body(t) for t in texts]

    def _body(self, text: str) -> bytes:
        o = self.opts
        body = {"model": o.model, "messages": [{"role": "user", "content": text}], "max_tokens": o.max_tokens,
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        if o.ignore_eos:
            body["ignore_eos"] = True
        if o.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = o.top_logprobs
        data = json.dumps(body).encode()
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Accept: text/event-stream\r\n{self._auth}Content-Length: {len(data)}\r\n\r\n").encode()
        return head + data

    async def open(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        return _Conn(reader, writer)

    async def close(self, conn: _Conn | None) -> None:
        if conn is not None:
            conn.writer.close()
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass

    async def request(self, conn: _Conn | None, i: int) -> tuple[Record, _Conn | None]:
        """Sends request i (prompt i mod len); returns its record and the connection to reuse (None: closed)."""
        if conn is None:
            conn = await self.open()
        rec = Record(start=time.perf_counter())
        try:
            keep = await asyncio.wait_for(self._exchange(conn, self._bodies[i % len(self._bodies)], rec),
                                          REQUEST_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            rec.error = rec.error or f"{type(exc).__name__}: {exc}"[:300]
            keep = False
        rec.end = time.perf_counter()
        if not keep:
            await self.close(conn)
            conn = None
        return rec, conn

    async def _exchange(self, conn: _Conn, body: bytes, rec: Record) -> bool:
        conn.writer.write(body)
        await conn.writer.drain()
        reader = conn.reader
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        keep = headers.get("connection", "").lower() != "close"
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = int(headers["content-length"]) if "content-length" in headers else None
        if status != 200:
            data = await self._read_all(reader, chunked, length)
            rec.error = f"HTTP {status}: {data[:300].decode('utf-8', 'replace')}"
            return keep and (chunked or length is not None)
        buf = b""
        if chunked:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # the empty trailer section
                    break
                buf = self._events(buf + await reader.readexactly(size), rec)
                await reader.readexactly(2)
        elif length is not None:
            while length > 0:
                piece = await reader.read(min(length, 1 << 16))
                if not piece:
                    raise asyncio.IncompleteReadError(b"", length)
                length -= len(piece)
                buf = self._events(buf + piece, rec)
        else:  # delimited by the connection's end
            keep = False
            while piece := await reader.read(1 << 16):
                buf = self._events(buf + piece, rec)
        _no_output(rec)
        return keep

    @staticmethod
    async def _read_all(reader: asyncio.StreamReader, chunked: bool, length: int | None) -> bytes:
        if chunked:
            out = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return out
                out += await reader.readexactly(size)
                await reader.readexactly(2)
        if length is not None:
            return await reader.readexactly(length)
        return await reader.read()

    @staticmethod
    def _events(buf: bytes, rec: Record) -> bytes:
        """Consumes the complete SSE events in buf (all stamped now); returns the incomplete rest."""
        now = time.perf_counter()
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        *events, rest = buf.split(b"\n\n")
        for ev in events:
            for line in ev.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]" or not data:
                    continue
                obj = json.loads(data)
                if "error" in obj:
                    rec.error = f"in-band error: {json.dumps(obj['error'])[:300]}"
                    continue
                if obj.get("usage"):
                    rec.tokens = int(obj["usage"].get("completion_tokens") or 0)
                for c in obj.get("choices") or ():
                    if (c.get("delta") or {}).get("content") or (c.get("logprobs") or {}).get("content"):
                        rec.chunks.append(now)
                        break
        return rest


# -- gRPC ---------------------------------------------------------------------------------------------


def _channels(address: str, concurrency: int) -> list[grpc.aio.Channel]:
    """One HTTP/2 connection per 64 concurrent streams (at most 8), each its own (a local subchannel pool)."""
    n = max(1, min(8, math.ceil(concurrency / 64)))
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20)]
    return [grpc.aio.insecure_channel(address, options=opts) for _ in range(n)]


class _GrpcClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self._chans: list[grpc.aio.Channel] = []
        self._stubs: list = []

    def _stub(self, channel: grpc.aio.Channel):
        raise NotImplementedError

    async def start(self, concurrency: int) -> None:
        self._chans = _channels(self.address, concurrency)
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in self._chans))
        self._stubs = [self._stub(c) for c in self._chans]

    async def stop(self) -> None:
        await asyncio.gather(*(c.close() for c in self._chans))

    async def open(self) -> int:
        return 0

    async def close(self, conn) -> None:
        return None


class ChatGrpcClient(_GrpcClient):
    """The orchestrator's StreamChatCompletion."""

    name = "grpc"

    def __init__(self, address: str, texts: Sequence[str], opts: Options, api_key: str = "") -> None:
        super().__init__(address)
        self.opts = opts
        self._reqs = [self._req(t) for t in texts]
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None

    def _stub(self, channel):
        return chat_pb2_grpc.ChatServiceStub(channel)

    def _req(self, text: str) -> chat_pb2.StreamChatCompletionRequest:
        o = self.opts
        req = chat_pb2.StreamChatCompletionRequest(
            model=o.model, messages=[chat_pb2.ChatRequestMessage(role="user", content=struct_pb2.Value(string_value=text))],
            max_tokens=o.max_tokens, temperature=0.0, stream_options=common_pb2.StreamOptions(include_usage=True))
        if o.ignore_eos:
            req.ignore_eos = True
        if o.top_logprobs is not None:
            req.logprobs = True
            req.top_logprobs = o.top_logprobs
        return req

    async def request(self, conn, i: int):
        rec = Record(start=time.perf_counter())
        call = self._stubs[i % len(self._stubs)].StreamChatCompletion(self._reqs[i % len(self._reqs)],
                                                                       timeout=REQUEST_TIMEOUT_S, metadata=self._metadata)
        try:
            async for chunk in call:
                now = time.perf_counter()
                if chunk.HasField("usage"):
                    rec.tokens = chunk.usage.completion_tokens
                for c in chunk.choices:
                    if c.delta.content or (c.HasField("logprobs") and len(c.logprobs.content)):
                        rec.chunks.append(now)
                        break
            _no_output(rec)
        except grpc.aio.AioRpcError as exc:
            rec.error = f"{exc.code().name}: {exc.details()}"[:300]
        rec.end = time.perf_counter()
        return rec, conn


class DirectClient(_GrpcClient):
    """The inference service's Generate, with pre-rendered prompt ids (what the orchestrator sends)."""

    name = "direct"

    def __init__(self, address: str, prompt_ids: Sequence[Sequence[int]], stop_ids: Sequence[int], opts: Options) -> None:
        super().__init__(address)
        self.opts = opts
        self.prompt_ids = [list(p) for p in prompt_ids]
        self.stop_ids = list(stop_ids)

    def _stub(self, channel):
        return inference_pb2_grpc.InferenceServiceStub(channel)

    def _req(self, i: int) -> inference_pb2.GenerateRequest:
        o = self.opts
        req = inference_pb2.GenerateRequest(
            request_id=f"bench-{uuid.uuid4().hex}", prompt_token_ids=self.prompt_ids[i % len(self.prompt_ids)],
            sampling=inference_pb2.SamplingParams(temperature=0.0),
            stopping=inference_pb2.StoppingParams(max_tokens=o.max_tokens, ignore_eos=o.ignore_eos,
                                                  stop_token_ids=self.stop_ids))
        if o.top_logprobs is not None:
            req.logprobs = o.top_logprobs
        return req

    async def request(self, conn, i: int):
        rec = Record(start=time.perf_counter(), chunk_tokens=[])
        call = self._stubs[i % len(self._stubs)].Generate(self._req(i), timeout=REQUEST_TIMEOUT_S)
        try:
            async for resp in call:
                now = time.perf_counter()
                if resp.token_ids:
                    rec.chunks.append(now)
                    rec.chunk_tokens.append(len(resp.token_ids))
                    rec.tokens += len(resp.token_ids)
            if not rec.chunks:
                rec.error = "the stream carried no output"
        except grpc.aio.AioRpcError as exc:
            rec.error = f"{exc.code().name}: {exc.details()}"[:300]
        rec.end = time.perf_counter()
        return rec, conn


# -- one level ----------------------------------------------------------------------------------------


async def run_level(client, concurrency: int, requests: int, *, warmup: int = 1,
                    on_start: Callable[[], None] | None = None, on_end: Callable[[], None] | None = None,
                    level_timeout: float = 900.0) -> tuple[list[Record], float]:
    """Runs `requests` requests (prompt i for request i) with `concurrency` workers; returns (records, wall s).

    Before the window: `warmup` requests, then every worker's connection opened. `on_start`/`on_end` run
    at the window's edges (CPU readings)."""
    if hasattr(client, "start"):
        await client.start(concurrency)
    try:
        conn = None
        for w in range(warmup):
            rec, conn = await client.request(conn, w)
            if rec.error:
                raise RuntimeError(f"warm-up request failed: {rec.error}")
        await client.close(conn)
        conns = list(await asyncio.gather(*(client.open() for _ in range(concurrency))))
        todo = iter(range(requests))
        records: list[Record] = []

        async def worker(k: int) -> None:
            conn = conns[k]
            for i in todo:
                rec, conn = await client.request(conn, i)
                records.append(rec)
            await client.close(conn)

        if on_start:
            on_start()
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(worker(k)) for k in range(concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=level_timeout)
        wall = time.perf_counter() - t0
        if on_end:
            on_end()
        for t in pending:
            t.cancel()
        for t in done:
            if t.exception() is not None:
                raise t.exception()
        if pending:
            records += [Record(start=t0, end=t0 + wall, error=f"level timed out after {level_timeout:.0f}s")
                        for _ in range(requests - len(records))]
        return records, wall
    finally:
        if hasattr(client, "stop"):
            await client.stop()


# -- metrics ------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1e3, 3)


def summarize(records: Sequence[Record], wall: float) -> dict:
    """The metrics of one level: counts, throughput, TTFT, ITL (chunk gaps), TPOT (per request), chunking.

    An arrival is a chunk or a run of chunks less than ARRIVAL_GAP_S apart (events read together, messages
    of one burst): tokens per arrival above 1 means the client got tokens in clumps, whatever the framing."""
    ok = [r for r in records if r.error is None]
    timed = [r for r in ok if r.chunks]
    ttft = [r.chunks[0] - r.start for r in timed]
    itl = [b - a for r in timed for a, b in zip(r.chunks, r.chunks[1:])]
    tpot = [(r.chunks[-1] - r.chunks[0]) / (r.tokens - 1) for r in timed if r.tokens > 1 and len(r.chunks) > 1]
    tokens = sum(r.tokens for r in ok)
    timed_tokens = sum(r.tokens for r in timed)
    chunks = sum(len(r.chunks) for r in timed)
    arrivals = sum(1 + sum(b - a >= ARRIVAL_GAP_S for a, b in zip(r.chunks, r.chunks[1:])) for r in timed)
    errors: dict[str, int] = {}
    for r in records:
        if r.error is not None:
            key = r.error[:120]
            errors[key] = errors.get(key, 0) + 1
    return {
        "requests": len(records), "ok": len(ok), "errors": len(records) - len(ok), "error_kinds": errors,
        "no_text": sum(r.no_text for r in ok), "output_tokens": tokens, "chunks": chunks,
        "tokens_per_chunk": round(timed_tokens / chunks, 4) if chunks else None,
        "tokens_per_arrival": round(timed_tokens / arrivals, 4) if arrivals else None,
        "wall_s": round(wall, 4),
        "tok_s": round(tokens / wall, 2) if wall > 0 else None,
        "req_s": round(len(ok) / wall, 3) if wall > 0 else None,
        "ttft_p50_ms": ms(percentile(ttft, 50)), "ttft_p90_ms": ms(percentile(ttft, 90)),
        "ttft_p99_ms": ms(percentile(ttft, 99)),
        "itl_p50_ms": ms(percentile(itl, 50)), "itl_p99_ms": ms(percentile(itl, 99)),
        "tpot_p50_ms": ms(percentile(tpot, 50)), "tpot_p99_ms": ms(percentile(tpot, 99)),
        "latency_p50_ms": ms(percentile([r.end - r.start for r in ok], 50)),
    }


def per_request(records: Sequence[Record]) -> list[dict]:
    """The raw per-request figures kept in the JSON (chunk timestamps are summarised, not stored)."""
    out = []
    for r in records:
        row = {"ttft_ms": ms(r.chunks[0] - r.start) if r.chunks else None, "latency_ms": ms(r.end - r.start),
               "chunks": len(r.chunks), "tokens": r.tokens}
        if r.error is not None:
            row["error"] = r.error
        if r.no_text:
            row["no_text"] = True
        out.append(row)
    return out


METRICS = ("requests", "ok", "errors", "no_text", "output_tokens", "chunks", "tokens_per_chunk", "tokens_per_arrival",
           "wall_s", "tok_s", "req_s",
           "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "tpot_p50_ms", "tpot_p99_ms")
