"""The token sampler: one token per row of a step's logits, each row with its own parameters, its own
per-sequence state and its own random generator. No model, no scheduler: the engine hands it logits.

What a row's token is (the engine's promise, unchanged from the sampler this module replaced):
  - logprobs are the log-softmax of the *raw* logits, before penalties, bias, temperature and
    truncation: the chosen token's, plus the `n` best when a request asks for n alternatives;
  - the logits are adjusted in this order: repetition penalty over the ids in prompt + generated
    (x > 0: x / r, else x * r), presence and frequency penalties over the generated-token counts,
    logit_bias, and while fewer than min_tokens tokens were generated every stop id and EOS is -inf;
  - temperature 0 is the argmax of the adjusted logits (the first one on a tie);
  - otherwise the logits are divided by the temperature, cut to the top_k best, then to the top_p
    nucleus and the min_p floor (both measured on the same top_k-renormalised probabilities), the
    best token always kept, and one token is drawn from what is left. A +inf logit_bias forces its
    id (several: one of them, equally likely); the replaced sampler failed the batch on it.

How a token is drawn: each sampled row takes exactly one uniform u (float64) from its own generator
per step, and its token is the inverse CDF at u of the row's final distribution with the ids in
increasing order. The token is a function of u and that row's distribution only: neither the other
rows of the batch nor the route the sampler took (dense, top-k candidates, nucleus) changes it, so a
seeded sequence gives the same tokens in any batch. (The sampler this replaced drew with
torch.multinomial in sorted order: a seed gives other tokens than it did there, from the same
distribution.)

A resumed sequence (`ResolvedParams.resumed_tokens` = k: the prompt's last k ids are its own earlier
output, continued here from another replica) starts where an unbroken run would be after k tokens: those
ids count as generated for the presence and frequency penalties (the repetition penalty sees them anyway,
as prompt), and a seeded sampled row's generator is advanced by the k uniforms the unbroken run drew for
them, one `torch.rand(1, float64)` at a time exactly as a step draws (no cheaper bulk draw: its
consumption of the generator's stream is not promised to match). Every step of a sampled row draws, a
masked (min_tokens) or forced (+inf logit_bias) one too; a greedy row never draws. `generated`, and so the
min_tokens mask, still counts new tokens only.

Only the decodable vocabulary takes part: the logits' columns past `vocab_size` (a checkpoint's
padded rows) are never sampled, named in top logprobs or counted in a logprob's normalisation.

Where the time goes, and what is avoided:
  - all rows greedy with nothing to adjust and no logprobs: one argmax over the [R, vocab] view,
    through block maxima (torch's argmax does not vectorise, its amax does);
  - penalties, bias and the min_tokens mask touch only the ids they name, through per-sequence state
    that `observe` keeps (seen ids, generated ids and their counts: small buffers, grown rarely),
    batched over the rows that need them: no vocabulary-sized temporaries;
  - no full-vocabulary sort unless top_p needs one: temperature alone is a softmax and a draw; min_p
    is a threshold; top_k is a topk (and top_p / min_p then work on its k candidates); top_p without
    top_k looks for the nucleus among the 32, then 256, then 4096 best before it sorts a row; a small
    top-k (top_k, those candidates, logprob alternatives) searches only the blocks with the best maxima;
  - the draw itself is one pass of block sums and a scan inside one block, not a vocabulary-wide
    cumulative sum or one random number per id;
  - vocabulary-sized working tensors (a float32 copy of half-precision logits, the probabilities, the
    raw logprobs, gathered rows) are scratch buffers the sampler keeps and reuses, never allocated per
    step once the batch has reached its size; otherwise the work happens in place on `logits`.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Sequence

import torch

from .base import ResolvedParams, TokenLogprob

_NEG_INF = float("-inf")
_POS_INF = float("inf")
#: The dense draw sums the probabilities per block of this many ids, then scans inside one block.
_BLOCK = 1024
#: top_p without top_k looks for the nucleus among this many best ids before it sorts the whole row.
_NUCLEUS_STAGES = (32, 256, 4096)


class SamplingState:
    """Per-sequence sampler state, created once at admission, kept across preemption/recompute.

    `observe` must see every emitted token once, in order. The tensors here are small (the ids a penalty
    names), never vocabulary-sized; they are created outside inference mode so that the engine may
    update them inside it or not. With `params.resumed_tokens` = k, the last k of `prompt_ids` were
    generated earlier (module docstring): they are counted, and a seeded generator skips their draws, here."""

    def __init__(self, params: ResolvedParams, prompt_ids: Sequence[int], eos_ids: Iterable[int], vocab: int) -> None:
        self.params = params
        self.vocab = vocab
        eos = {int(i) for i in eos_ids}
        stops = {int(i) for i in params.stop_token_ids} | (set() if params.ignore_eos else eos)
        #: The ids that end the sequence (once min_tokens is reached): stop_token_ids, plus EOS unless ignore_eos.
        self.stop_ids: frozenset[int] = frozenset(stops)
        #: Tokens observed so far (new ones: not the resumed ones).
        self.generated = 0
        self.generator = torch.Generator()
        self.generator.manual_seed(params.seed if params.seed is not None else secrets.randbits(63))
        self.greedy = params.temperature == 0.0
        self.temperature = float(params.temperature)
        self.top_k = params.top_k if 0 < params.top_k < vocab else 0  # 0: no top-k cut
        self.top_p = float(params.top_p)
        self.min_p = float(params.min_p)
        self.logprobs = params.logprobs
        self.rep = float(params.repetition_penalty)
        self.freq = float(params.frequency_penalty)
        self.pres = float(params.presence_penalty)
        resumed = params.resumed_tokens
        cap = max(16, min(params.max_tokens + resumed, 4096))  # grown when a sequence outlives it
        with torch.inference_mode(False):
            # masked while min_tokens is not reached: every id that could end the sequence (EOS even with ignore_eos)
            masked = sorted(i for i in stops | eos if 0 <= i < vocab)
            self.mask_ids = torch.tensor(masked, dtype=torch.long) if masked and params.min_tokens > 0 else None
            self.mask_until = params.min_tokens if self.mask_ids is not None else 0
            bias = {int(i): float(v) for i, v in params.logit_bias.items() if 0 <= int(i) < vocab and v != 0}
            self.bias_ids = torch.tensor(list(bias), dtype=torch.long) if bias else None
            self.bias_vals = torch.tensor(list(bias.values()), dtype=torch.float32) if bias else None
            # a +inf bias forces its id(s): sampling keeps only those, equally likely
            self.forced = any(v == _POS_INF for v in bias.values())
            self._seen: set[int] | None = None
            if self.rep != 1.0:
                self._seen = {int(i) for i in prompt_ids if 0 <= i < vocab}
                self._seen_n = len(self._seen)
                self._seen_buf = torch.empty(self._seen_n + cap, dtype=torch.long)
                self._seen_buf[:self._seen_n] = torch.tensor(sorted(self._seen), dtype=torch.long)
            self._slots: dict[int, int] | None = None
            if self.freq or self.pres:
                self._slots = {}  # generated id -> its slot in the two buffers below
                self._gen_buf = torch.empty(cap, dtype=torch.long)
                self._cnt_buf = torch.empty(cap, dtype=torch.float32)
        # greedy with nothing to adjust and no logprobs: the argmax of the raw logits (while no mask is active)
        self.plain = (self.greedy and self.rep == 1.0 and not self.freq and not self.pres and self.bias_ids is None
                      and self.logprobs is None)
        if resumed:
            with torch.inference_mode(False):
                for token_id in prompt_ids[len(prompt_ids) - resumed:]:
                    self._count(int(token_id))  # already in _seen: they are prompt ids
            if not self.greedy and params.seed is not None:  # unseeded: a fresh stream either way
                for _ in range(resumed):  # the draws of the k steps that generated them, one per step
                    torch.rand(1, dtype=torch.float64, generator=self.generator)

    def observe(self, token_id: int) -> None:
        """Records one emitted token (after sampling, once per token)."""
        self.generated += 1
        if self._seen is not None and token_id not in self._seen:
            self._seen.add(token_id)
            self._seen_buf = _append(self._seen_buf, self._seen_n, token_id)
            self._seen_n += 1
        self._count(token_id)

    def _count(self, token_id: int) -> None:
        """Counts a generated id for the presence and frequency penalties (when the sequence has them)."""
        if self._slots is not None:
            slot = self._slots.get(token_id)
            if slot is None:
                slot = self._slots[token_id] = len(self._slots)
                self._gen_buf = _append(self._gen_buf, slot, token_id)
                self._cnt_buf = _append(self._cnt_buf, slot, 1.0)
            else:
                self._cnt_buf[slot] += 1.0

    @property
    def masking(self) -> bool:
        """Stop ids and EOS are masked this step (min_tokens not reached)."""
        return self.generated < self.mask_until

    def seen_ids(self) -> torch.Tensor:
        """The distinct ids in prompt + generated (only with a repetition penalty)."""
        return self._seen_buf[:self._seen_n]

    def generated_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The distinct generated ids and how often each was generated (only with presence/frequency penalties)."""
        n = len(self._slots)
        return self._gen_buf[:n], self._cnt_buf[:n]


def _append(buf: torch.Tensor, n: int, value) -> torch.Tensor:
    """buf with buf[n] = value, doubled first when full."""
    if n == len(buf):
        with torch.inference_mode(False):
            grown = torch.empty(2 * n, dtype=buf.dtype)
            grown[:n] = buf
        buf = grown
    buf[n] = value
    return buf


class Sampler:
    """Samples one token per row for a batch of sequences. Keeps scratch buffers between steps: one
    instance per scheduler thread."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self._buffers: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, states: Sequence[SamplingState]) -> list[tuple[int, TokenLogprob | None]]:
        """logits: [R, C] float (C >= vocab_size; columns past vocab_size are padding never sampled nor counted),
        one row per state. May modify `logits` in place (the caller gives a fresh tensor each step)."""
        n_rows = len(states)
        if n_rows == 0:
            return []
        x = logits[:, :self.vocab_size]
        if all(s.plain and s.generated >= s.mask_until for s in states):
            return [(t, None) for t in _argmax(x).tolist()]
        if x.dtype != torch.float32:
            x = self._scratch("float32", n_rows, x).copy_(x)
        lp_rows = [i for i, s in enumerate(states) if s.logprobs is not None]
        raw_lp = None
        if lp_rows:  # before anything touches the logits
            raw_lp = torch.log_softmax(self._rows(x, lp_rows, "work"), dim=-1,
                                       out=self._scratch("logprobs", len(lp_rows), x))
        self._adjust(x, states)
        chosen = [0] * n_rows
        greedy = [i for i, s in enumerate(states) if s.greedy]
        if greedy:
            for i, t in zip(greedy, _argmax(self._rows(x, greedy, "work")).tolist()):
                chosen[i] = t
        if len(greedy) < n_rows:
            self._draw_sampled(x, states, chosen)
        if raw_lp is None:
            return [(t, None) for t in chosen]
        ids = torch.tensor([chosen[i] for i in lp_rows], device=x.device)
        chosen_lp = raw_lp.gather(1, ids[:, None])[:, 0].tolist()
        top_n = min(max(states[i].logprobs for i in lp_rows), self.vocab_size)
        if top_n:
            top_vals, top_ids = _topk(raw_lp, top_n)
            top_vals, top_ids = top_vals.tolist(), top_ids.tolist()
        result: list[tuple[int, TokenLogprob | None]] = [(t, None) for t in chosen]
        for j, i in enumerate(lp_rows):
            n = states[i].logprobs
            top = tuple(zip(top_ids[j][:n], top_vals[j][:n])) if n else ()
            result[i] = (chosen[i], TokenLogprob(chosen_lp[j], top))
        return result

    # ---- adjusting the logits --------------------------------------------------------------

    @staticmethod
    def _adjust(x: torch.Tensor, states: Sequence[SamplingState]) -> None:
        """Penalties, logit bias and the min_tokens mask, in place, only at the ids they name."""
        dev = x.device
        rep = [(i, s) for i, s in enumerate(states) if s.rep != 1.0]
        if rep:
            rows, cols, lens = _coords([(i, s.seen_ids()) for i, s in rep], dev)
            r = torch.tensor([s.rep for _, s in rep], device=dev).repeat_interleave(lens)
            v = x[rows, cols]
            x[rows, cols] = torch.where(v > 0, v / r, v * r)
        pen = [(i, s) for i, s in enumerate(states) if s._slots]
        if pen:
            counted = [s.generated_counts() for _, s in pen]
            rows, cols, lens = _coords([(i, ids) for (i, _), (ids, _) in zip(pen, counted)], dev)
            cnt = torch.cat([c for _, c in counted]).to(dev)
            f = torch.tensor([s.freq for _, s in pen], device=dev).repeat_interleave(lens)
            p = torch.tensor([s.pres for _, s in pen], device=dev).repeat_interleave(lens)
            x[rows, cols] = x[rows, cols] - f * cnt - p
        bias = [(i, s) for i, s in enumerate(states) if s.bias_ids is not None]
        if bias:
            rows, cols, _ = _coords([(i, s.bias_ids) for i, s in bias], dev)
            x.index_put_((rows, cols), torch.cat([s.bias_vals for _, s in bias]).to(dev), accumulate=True)
        masked = [(i, s) for i, s in enumerate(states) if s.masking]
        if masked:
            rows, cols, _ = _coords([(i, s.mask_ids) for i, s in masked], dev)
            x.index_put_((rows, cols), torch.tensor(_NEG_INF, device=dev))

    # ---- drawing ---------------------------------------------------------------------------

    def _draw_sampled(self, x: torch.Tensor, states: Sequence[SamplingState], chosen: list[int]) -> None:
        """Draws the non-greedy rows, grouped by their top-k (0: none), into `chosen`."""
        groups: dict[int, list[int]] = {}
        for i, s in enumerate(states):
            if not s.greedy:
                groups.setdefault(s.top_k, []).append(i)
        for k, g in groups.items():
            # one uniform per sampled row and step, from the row's own generator: nothing else draws from it
            ug = torch.cat([torch.rand(1, dtype=torch.float64, generator=states[i].generator) for i in g]).to(x.device)
            ids = self._draw_top_k(x, states, g, ug, k) if k else self._draw_dense(x, states, g, ug)
            for i, t in zip(g, ids.tolist()):
                chosen[i] = t

    def _draw_dense(self, x: torch.Tensor, states: Sequence[SamplingState], rows: list[int],
                    u: torch.Tensor) -> torch.Tensor:
        """Rows without top-k: softmax over the whole vocabulary, min_p as a threshold, top_p on the
        best candidates (a sort only when the nucleus is wider than the last stage), then the dense draw."""
        sts = [states[i] for i in rows]
        xs = self._rows(x, rows, "work")
        if any(s.temperature != 1.0 for s in sts):
            xs.div_(torch.tensor([s.temperature for s in sts], device=x.device)[:, None])
        for j, s in enumerate(sts):
            if s.forced:
                _keep_forced(xs[j])
        p = torch.softmax(xs, dim=-1, out=self._scratch("probs", len(rows), x))
        for j, s in enumerate(sts):
            if s.min_p > 0:  # keep p >= min_p * max p: the best always survives
                floor = p[j].amax() * torch.tensor(s.min_p, device=x.device)
                torch.nn.functional.threshold_(p[j], torch.nextafter(floor, torch.zeros_like(floor)).item(), 0.0)
        nucleus = [j for j, s in enumerate(sts) if s.top_p < 1.0]
        if nucleus:
            self._nucleus(p, nucleus, [sts[j].top_p for j in nucleus])
        return _dense_inverse_cdf(p, u)

    def _nucleus(self, p: torch.Tensor, rows: list[int], top_p: list[float]) -> None:
        """Zeroes, in rows of p (probabilities, min_p already applied), every id outside the top_p nucleus:
        an id goes when the probability of the ids ranked above it reaches top_p; the best one stays."""
        width = p.shape[-1]
        pending = list(range(len(rows)))
        for m in [m for m in _NUCLEUS_STAGES if m < width] + [width]:
            if not pending:
                return
            rows_m = [rows[q] for q in pending]
            cand = self._rows(p, rows_m, "nucleus")
            vals, ids = _topk(cand, m) if m < width else cand.sort(dim=-1, descending=True)
            tp = torch.tensor([top_p[q] for q in pending], device=p.device)[:, None]
            remove = (vals.cumsum(dim=-1) - vals) >= tp
            # settled when the last candidate is already out (every id after it is too) or nothing is left after it
            done = (remove[:, -1] | (vals[:, -1] == 0)).tolist() if m < width else [True] * len(pending)
            remove[:, 0] = False
            vals.masked_fill_(remove, 0.0)
            if all(done) and _consecutive(rows_m):  # cand is a view of those rows of p
                if m < width:
                    cand.zero_()
                cand.scatter_(1, ids, vals)
            else:
                for r, (j, d) in enumerate(zip(rows_m, done)):
                    if d:
                        if m < width:
                            p[j].zero_()
                        p[j].scatter_(0, ids[r], vals[r])
            pending = [q for q, d in zip(pending, done) if not d]

    def _draw_top_k(self, x: torch.Tensor, states: Sequence[SamplingState], rows: list[int], u: torch.Tensor,
                    k: int) -> torch.Tensor:
        """Rows with the same top-k: everything on the k best candidates."""
        sts = [states[i] for i in rows]
        dev = x.device
        vals, ids = _topk(self._rows(x, rows, "work"), k)
        vals = vals / torch.tensor([s.temperature for s in sts], device=dev)[:, None]
        for j, s in enumerate(sts):
            if s.forced:
                _keep_forced(vals[j])
        probs = torch.softmax(vals, dim=-1)
        remove = None
        if any(s.min_p > 0 for s in sts):
            min_p = torch.tensor([s.min_p for s in sts], device=dev)
            remove = probs < (min_p * probs[:, 0])[:, None]
        if any(s.top_p < 1.0 for s in sts):
            top_p = torch.tensor([s.top_p for s in sts], device=dev)
            nucleus = ((probs.cumsum(dim=-1) - probs) >= top_p[:, None]) & (top_p < 1)[:, None]
            remove = nucleus if remove is None else remove | nucleus
        if remove is not None:
            remove[:, 0] = False  # the best token always survives
            probs = probs.masked_fill(remove, 0.0)
        ids, order = ids.sort(dim=-1)  # the draw runs over ids in increasing order
        return ids.gather(1, _inverse_cdf(probs.gather(1, order), u)[:, None])[:, 0]

    # ---- scratch ---------------------------------------------------------------------------

    def _scratch(self, name: str, n: int, like: torch.Tensor) -> torch.Tensor:
        """A reused [n, vocab] float32 buffer on like's device, grown (never per step) to the largest n seen."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < n or buf.device != like.device:
            buf = torch.empty(n, self.vocab_size, dtype=torch.float32, device=like.device)
            self._buffers[name] = buf
        return buf[:n]

    def _rows(self, t: torch.Tensor, rows: list[int], name: str) -> torch.Tensor:
        """Rows of t (ascending indices): a view when they are consecutive, else a copy in scratch `name`."""
        if _consecutive(rows):
            return t[rows[0]:rows[-1] + 1]
        out = self._scratch(name, len(rows), t)
        return torch.index_select(t, 0, torch.tensor(rows, device=t.device), out=out)


def _consecutive(rows: list[int]) -> bool:
    """Ascending row indices without a gap."""
    return rows[-1] - rows[0] + 1 == len(rows)


def _coords(items: list[tuple[int, torch.Tensor]], dev: torch.device) -> tuple[torch.Tensor, ...]:
    """(row, ids) pairs as flat row and column index tensors, and each row's count."""
    lens = torch.tensor([len(ids) for _, ids in items], device=dev)
    rows = torch.tensor([i for i, _ in items], device=dev).repeat_interleave(lens)
    cols = (items[0][1] if len(items) == 1 else torch.cat([ids for _, ids in items])).to(dev)
    return rows, cols, lens


def _block(x: torch.Tensor, k: int) -> int:
    """The block size for a blocked top-k of k in each row of x, about sqrt(width / k); 0 when torch's own is as
    fast (small rows, few of them, a large k) or x's rows are not contiguous."""
    width = x.shape[-1]
    if width < 2048 or k * 512 > width or x.numel() < 65536 or x.stride(-1) != 1:
        return 0
    return max(16, min(1024, 1 << round(math.log2(math.sqrt(width / k)))))


def _block_max(x: torch.Tensor, b: int) -> torch.Tensor:
    """The max of every block of b ids of each row (the last block may be shorter): [n, ceil(width / b)]."""
    n, width = x.shape
    nb, full = width // b, width // b * b
    m = x[:, :full].view(n, nb, b).amax(dim=-1)
    if full < width:
        m = torch.cat([m, x[:, full:].amax(dim=-1, keepdim=True)], dim=1)
    return m


def _argmax(x: torch.Tensor) -> torch.Tensor:
    """x.argmax(dim=-1) (the first maximum), found through block maxima: torch's argmax does not vectorise,
    its amax does. Small temporaries only."""
    b = _block(x, 1)
    if not b:
        return x.argmax(dim=-1)
    block = _block_max(x, b).argmax(dim=-1)
    cols = ((block * b)[:, None] + torch.arange(b, device=x.device)).clamp_(max=x.shape[-1] - 1)
    return cols.gather(1, x.gather(1, cols).argmax(dim=-1, keepdim=True))[:, 0]


def _topk(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x.topk(k, dim=-1) (best first), searched only in the k blocks with the best maxima: every one of the k
    best ids lies in one of them. Ties may name other ids than torch's topk would."""
    width = x.shape[-1]
    b = _block(x, k)
    if not b:
        return x.topk(k, dim=-1)
    m = _block_max(x, b)
    blocks = m.topk(min(k, m.shape[-1]), dim=-1).indices
    cols = ((blocks * b)[:, :, None] + torch.arange(b, device=x.device)).flatten(1)
    vals = x.gather(1, cols.clamp(max=width - 1)).masked_fill_(cols >= width, _NEG_INF)
    vals, j = vals.topk(k, dim=-1)
    return vals, cols.gather(1, j).clamp_(max=width - 1)


def _keep_forced(row: torch.Tensor) -> None:
    """A row with +inf logits: those ids equally likely, the rest impossible (softmax would give NaN)."""
    forced = row == _POS_INF
    if forced.any():  # not when the min_tokens mask took the forced id back
        row.copy_(torch.where(forced, 0.0, _NEG_INF))


def _inverse_cdf(w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per row of non-negative weights w [n, W] (not all zero), the first index whose cumulative weight
    exceeds u * total: never an index of weight 0."""
    c = w.double().cumsum(dim=-1)
    total = c[:, -1]
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(c, target[:, None], right=True)[:, 0].clamp_(max=w.shape[-1] - 1)


def _dense_inverse_cdf(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The inverse CDF of each row of p [n, V] at u over ids in increasing order, without a vocabulary-wide
    scan: sums per block of _BLOCK ids, the block that holds u * total, then a scan inside it."""
    n, width = p.shape
    if width <= 2 * _BLOCK or p.numel() < 65536:  # small: one scan costs less than the steps below
        return _inverse_cdf(p, u)
    nb, full = width // _BLOCK, width // _BLOCK * _BLOCK
    sums = p[:, :full].view(n, nb, _BLOCK).sum(dim=-1)
    if full < width:
        sums = torch.cat([sums, p[:, full:].sum(dim=-1, keepdim=True)], dim=1)
    cb = sums.double().cumsum(dim=-1)
    total = cb[:, -1]
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    block = torch.searchsorted(cb, target[:, None], right=True)[:, 0].clamp_(max=cb.shape[-1] - 1)
    before = torch.where(block > 0, cb.gather(1, (block - 1).clamp(min=0)[:, None])[:, 0], 0.0)
    start = block * _BLOCK
    cols = start[:, None] + torch.arange(_BLOCK, device=p.device)
    w = p.gather(1, cols.clamp(max=width - 1)) * (cols < width)
    c = w.double().cumsum(dim=-1)
    rest = torch.minimum(target - before, torch.nextafter(c[:, -1], torch.zeros_like(total)))
    return start + torch.searchsorted(c, rest[:, None], right=True)[:, 0].clamp_(max=_BLOCK - 1)

