"""lm-eval models that score answer letters at forward-pass speed: ``persona-bench-lm`` (a frozen LM)
and ``persona-bench-steered`` (the same LM steered per doc by a trained steering module).

Stock ``HFLM`` already runs one forward per distinct context, but it computes the LM head and
a full-vocabulary log-softmax at every position of every row. Here:

* each distinct (steering key, input tokens) row is run once, through the one steered forward
  (:func:`persona_bench.harness.scoring.steering.token_logprobs`), with the LM head applied only at the
  positions whose next token is scored, so all letters of a question share one forward;
* rows are length-bucketed (sorted, batched by a token budget, right-padded);
* with ``share_stems=True`` (off by default, see ``LetterScoringLM.shares_stems``), unsteered rows
  that share a stem of 16 tokens or more (a doc's rotations under cyclic order share the question
  and everything before it; a person's prompts share their traits or earlier answers) run the stem
  once: its key/values are computed and cached (the head cache of answer-placed steering), and
  each row runs only its remaining tokens;
* tokenisation is cached, and scores persist in an SQLite cache keyed by the model
  fingerprint, the steering key and the request text, so identical prompts are scored once
  across methods and runs, and an interrupted run resumes where it stopped. Several processes
  may share it (SQLite locks; write-ahead log).

Steering is a per-request argument: :meth:`LetterScoringLM.steering_for` reads it from the
request's doc (``persona-bench-steered`` reads ``doc["persona"]``), and it travels with the
request to the forward. Tokenisation of (context, continuation) pairs follows lm-eval's
``TemplateLM`` exactly (a test compares them), so log-probs equal ``HFLM``'s.

Data parallel: the models implement lm-eval's contract (``rank``, ``world_size``,
``all_gather``, ``gather_object``, ``barrier``), so ``torchrun ... -m lm_eval`` and persona-bench
runs under torchrun / accelerate split requests across ranks and gather on rank 0.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from ...tasks.prompts import raw_prompt, scored_prompt
from ..core.distributed import World
from ..core.errors import ConfigError, warn
from .adapters import adapter_fingerprint
from .models import autocast_dtype, cache_root, load_model
from .steerer import Steerer, load_steerer, weights_fingerprint
from .steering import Steering, has_sliding_window, token_batch, token_logprobs

Row = tuple[str, tuple[int, ...]]  # (steering key, input tokens)
MIN_STEM = 16  # tokens unsteered rows must share before their common stem is computed once and cached


def shared_stems(rows: list[Row], earliest: dict[Row, int]) -> dict[Row, int]:
    """Per unsteered row (steering key ""), the longest token prefix it shares with another row of the
    request set, at most its earliest scored position; rows that share fewer than ``MIN_STEM`` tokens
    are left out. Under cyclic order a doc's rotations share the question and all before it; a
    person-specific prompt (traits, earlier answers) shares its header across that person's questions."""
    unsteered = sorted((row for row in rows if row[0] == ""), key=lambda row: row[1])
    shared = [0] * len(unsteered)
    for i in range(len(unsteered) - 1):
        common = 0
        for a, b in zip(unsteered[i][1], unsteered[i + 1][1]):
            if a != b:
                break
            common += 1
        shared[i], shared[i + 1] = max(shared[i], common), max(shared[i + 1], common)
    stems = {row: min(common, earliest[row]) for row, common in zip(unsteered, shared)}
    return {row: stem for row, stem in stems.items() if stem >= MIN_STEM}


def model_fingerprint(model) -> str:
    """Identity of a model's weights, config, LoRA adapter weights (if any) and mixed precision (if any) for the score cache."""
    folder = Path(str(model.config.name_or_path))
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights if p.is_file()]
    payload = [str(folder.resolve()), model.config.to_json_string(), str(model.dtype), stamp]
    if adapter := adapter_fingerprint(model):  # a model without an adapter keeps the identity it always had
        payload.append(adapter)
    if autocast := autocast_dtype(model):  # so does a model without mixed precision
        payload.append(f"autocast {autocast}")
    payload = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class ScoreCache:
    """Persistent (key -> log-prob, greedy) store in SQLite; commits after every batch.

    A cache never stops a run: a damaged file found on opening is moved aside (``.corrupt-*``,
    with a warning) and a fresh one started; damage found later turns the cache off for the
    rest of the run, with a warning. Scores are then recomputed, never lost."""

    def __init__(self, path: Path | None):
        self.path, self.connection = path, None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.connection = self.open(path)
            except sqlite3.DatabaseError as exc:
                aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
                warn(f"score cache {path} is damaged ({exc}): moved aside to {aside}; starting a fresh cache")
                self.connection = self.open(path)

    @staticmethod
    def open(path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(str(path), timeout=120)
        with connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, logprob REAL, greedy INTEGER)")
            connection.execute("SELECT count(*) FROM (SELECT key FROM scores LIMIT 1)").fetchone()
        return connection

    def turn_off(self, exc: sqlite3.DatabaseError) -> None:
        warn(f"score cache {self.path} failed ({exc}): scoring goes on without it")
        self.connection = None

    def get_many(self, keys: list[str]) -> dict[str, tuple[float, bool]]:
        if self.connection is None or not keys:
            return {}
        found = {}
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = self.connection.execute(
                    f"SELECT key, logprob, greedy FROM scores WHERE key IN ({','.join('?' * len(chunk))})", chunk
                )
                found.update({key: (logprob, bool(greedy)) for key, logprob, greedy in rows})
        except sqlite3.DatabaseError as exc:
            self.turn_off(exc)
        return found

    def put_many(self, items: dict[str, tuple[float, bool]]) -> None:
        if self.connection is None or not items:
            return
        try:
            with self.connection:
                self.connection.executemany(
                    "INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", [(k, lp, int(g)) for k, (lp, g) in items.items()]
                )
        except sqlite3.DatabaseError as exc:
            self.turn_off(exc)


@register_model("persona-bench-lm")
class LetterScoringLM(TemplateLM):
    """A frozen Hugging Face causal LM scoring continuations (see module docstring)."""

    # the default of ``share_stems``: off until a row's stem no longer depends on which other rows are scored
    # with it (today a row's floats can differ in the 9th digit between a run alone and one whose companions
    # filled part of the score cache first); benchmarks/bench_option_order.py turns it on to measure it
    shares_stems: bool = False

    def __init__(
        self,
        pretrained: str = "smollm2-135m",
        device: str = "auto",
        dtype: str = "auto",
        batch_tokens: int = 8192,
        score_cache: str | None = "default",
        trust_remote_code: bool = False,
        device_map: str | None = None,
        share_stems: bool | None = None,
        model=None,
        tokenizer=None,
    ):
        super().__init__()
        self.world = World.current()
        if device == "auto" and self.world.distributed and torch.cuda.is_available():
            device = f"cuda:{self.world.local_rank}"
        if model is None:
            model, tokenizer = load_model(pretrained, device, dtype, trust_remote_code=bool(trust_remote_code), device_map=device_map)
        self.model, self.tokenizer = model, tokenizer
        self.batch_tokens = int(batch_tokens)
        self.share_stems = bool(self.shares_stems if share_stems is None else share_stems)  # lm-eval parses "false" to False
        self.fingerprint = model_fingerprint(model)
        cache_path = cache_root() / "scores.sqlite" if score_cache == "default" else Path(score_cache) if score_cache else None
        self.cache = ScoreCache(cache_path)
        self.max_length = int(getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 2048))
        self.encode_cached = lru_cache(maxsize=200_000)(self._encode_uncached)

    # ----------------------------------------------------------------- lm-eval plumbing
    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        """Build from ``--model_args`` only: lm-eval's generic ``--device``/``--batch_size`` do not
        apply (device defaults to auto; batches are sized by ``batch_tokens``)."""
        return cls(**arg_dict)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        from lm_eval.utils import simple_parse_args_string

        return cls(**simple_parse_args_string(arg_string))

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        return self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eot_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def _encode_uncached(self, string: str, add_special_tokens: bool | None) -> tuple[int, ...]:
        kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        bos = self.tokenizer.bos_token
        if add_special_tokens is None and bos and string.startswith(bos):
            kwargs["add_special_tokens"] = False
        return tuple(self.tokenizer.encode(string, **kwargs))

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return list(self.encode_cached(string, add_special_tokens))

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens as lm-eval's TemplateLM splits them: trailing spaces of
        the context move to the continuation, the continuation is what encoding the whole adds,
        and an empty context becomes the prefix token."""
        if context == "":
            return [self.prefix_token_id], self.tok_encode(continuation)
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tok_encode(context + continuation)
        context_tokens = self.tok_encode(context)
        return context_tokens, whole[len(context_tokens) :]

    def answer_cue(self) -> tuple[int, ...]:
        """The tokens this tokenizer gives the answer cue ("\\nAnswer:") at the end of a prompt."""
        body = raw_prompt({"question": "Is it?", "options": ["Yes", "No"]})
        without, whole = self.tok_encode(body), self.tok_encode(scored_prompt(body))
        if whole[: len(without)] != without or len(whole) == len(without):
            raise ConfigError(f"the tokenizer of {self.tokenizer.name_or_path} does not split the answer cue from the question")
        return tuple(whole[len(without) :])

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt, continue_final_message=not add_generation_prompt
        )

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("persona-bench-lm scores multiple-choice continuations only")

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("persona-bench-lm scores multiple-choice continuations only")

    # ----------------------------------------------------------------- data parallel (lm-eval's contract)
    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def world_size(self) -> int:
        return self.world.size

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` concatenated along the first dimension (scalars stacked)."""
        if self.world.size <= 1:
            return tensor
        gathered = [torch.zeros_like(tensor) for _ in range(self.world.size)]
        dist.all_gather(gathered, tensor)
        return torch.stack(gathered) if tensor.dim() == 0 else torch.cat(gathered)

    def gather_object(self, obj, dst: int = 0):
        if self.world.size <= 1:
            return [obj]
        result = [None] * self.world.size if self.world.rank == dst else None
        dist.gather_object(obj, result, dst=dst)
        return result

    def barrier(self) -> None:
        self.world.barrier()

    # ----------------------------------------------------------------- steering (per request)
    def steering_for(self, request) -> tuple[str, object]:
        """(key, payload) steering one request: the key identifies the steering for sharing
        forwards and caching scores; the payload builds it. Unsteered: ("", None)."""
        return "", None

    def steering_batch(self, payloads: list[object]) -> Steering | None:
        """The :class:`Steering` of a batch of rows from their payloads (unsteered: None)."""
        return None

    # ----------------------------------------------------------------- scoring
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """Log-probability of each request's continuation after its context, and whether it is greedy."""
        items = []
        for request in requests:
            context, continuation = request.args
            key, payload = self.steering_for(request)
            items.append((key, payload, context, continuation, *self.encode_pair(context, continuation)))
        return self.score_items(items, disable_tqdm)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """lm-eval's pre-tokenised entry point (unsteered)."""
        items = [("", None, context, continuation, c_enc, k_enc) for (context, continuation), c_enc, k_enc in requests]
        return self.score_items(items, disable_tqdm)

    def cache_key(self, steer: str, context: str, continuation: str) -> str:
        return hashlib.sha256("\x1f".join((self.fingerprint, steer, context, continuation)).encode()).hexdigest()

    def score_items(self, items: list[tuple], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """Score (key, payload, context, continuation, context tokens, continuation tokens) items."""
        cache_keys = [self.cache_key(key, context, continuation) for key, _, context, continuation, _, _ in items]
        results: dict[str, tuple[float, bool]] = self.cache.get_many(list(dict.fromkeys(cache_keys)))
        rows: OrderedDict[Row, list[tuple[str, tuple[int, ...]]]] = OrderedDict()
        payloads: dict[str, object] = {}
        queued: set[str] = set()
        for (key, payload, _, _, context_enc, continuation_enc), cache_key in zip(items, cache_keys):
            if cache_key in results or cache_key in queued:
                continue
            queued.add(cache_key)
            whole = (tuple(context_enc) + tuple(continuation_enc))[-(self.max_length + 1) :]
            rows.setdefault((key, whole[:-1]), []).append((cache_key, tuple(continuation_enc)))
            payloads.setdefault(key, payload)
        earliest = {row: min(len(row[1]) - len(continuation) for _, continuation in wanted) for row, wanted in rows.items()}
        stems = shared_stems(list(rows), earliest) if self.share_stems and not has_sliding_window(self.model) else {}
        batches = [(batch, None) for batch in self.length_batches([r for r in rows if r not in stems])]
        batches += [(batch, [stems[r] for r in batch]) for batch in self.stem_batches(stems)]
        for batch, batch_stems in tqdm(batches, disable=True if disable_tqdm or not rows else None, desc="scoring", unit="batch"):
            scored = self.score_rows(batch, [rows[r] for r in batch], [payloads[key] for key, _ in batch], batch_stems)
            self.cache.put_many(scored)
            results.update(scored)
        if self.world.distributed:  # each rank says what it did: the evidence that requests are split, not repeated
            print(f"persona-bench-lm rank {self.world.rank}/{self.world.size}: {len(items)} requests, "
                  f"{len(queued)} scored (not cached), {len(rows)} forward rows", file=sys.stderr, flush=True)
        return [results[k] for k in cache_keys]

    def length_batches(self, rows: list[Row]) -> list[list[Row]]:
        """Rows sorted by length (longest first), cut into batches within the token budget."""
        ordered = sorted(rows, key=lambda r: -len(r[1]))
        batches, current = [], []
        for row in ordered:
            if current and (len(current) + 1) * len(current[0][1]) > self.batch_tokens:
                batches.append(current)
                current = []
            current.append(row)
        return batches + ([current] if current else [])

    @torch.no_grad()
    def stem_batches(self, stems: dict[Row, int]) -> list[list[Row]]:
        """Rows with a shared stem, rows of one stem together (sorted by tokens), cut into batches
        whose tails fit the token budget."""
        batches, current, widest = [], [], 0
        for row in sorted(stems, key=lambda r: r[1]):
            tail = len(row[1]) - stems[row]
            if current and (len(current) + 1) * max(widest, tail) > self.batch_tokens:
                batches.append(current)
                current, widest = [], 0
            current.append(row)
            widest = max(widest, tail)
        return batches + ([current] if current else [])

    def score_rows(self, batch: list[Row], wanted: list[list[tuple[str, tuple[int, ...]]]], payloads: list[object],
                   stems: list[int] | None = None) -> dict:
        """Forward a batch of rows once; log-probs only where a continuation token is scored (``stems``:
        per row, its first tokens come from the head cache, :func:`shared_stems`)."""
        device = self.device
        input_ids, attention_mask = token_batch([tokens for _, tokens in batch], self.tokenizer.pad_token_id or 0, device)
        row_index, positions, targets, owners = [], [], [], []
        for i, ((_, tokens), requests) in enumerate(zip(batch, wanted)):
            for cache_key, continuation in requests:
                start = len(tokens) - len(continuation)
                for offset, token in enumerate(continuation):
                    row_index.append(i)
                    positions.append(start + offset)
                    targets.append(token)
                    owners.append(cache_key)
        logprobs, greedy = token_logprobs(
            self.model, input_ids, attention_mask, self.steering_batch(payloads),
            torch.tensor(row_index, device=device), torch.tensor(positions, device=device), torch.tensor(targets, device=device)[:, None],
            stems,
        )
        out: dict[str, tuple[float, bool]] = {}
        for owner, value, is_greedy in zip(owners, logprobs[:, 0].cpu().tolist(), greedy[:, 0].cpu().tolist()):
            total, all_greedy = out.get(owner, (0.0, True))
            out[owner] = (total + value, all_greedy and is_greedy)
        return out


@register_model("persona-bench-steered")
class SteeredLM(LetterScoringLM):
    """LetterScoringLM whose rows are steered by a trained steering module fed each doc's persona.

    Every doc carries its persona vector (``doc["persona"]``); rows with different personas
    share a batch, each with its own steering. The persona (with the module's weights) is part
    of each request's key, both for sharing forwards and for the score cache: lm-eval's HFLM
    would share one forward between identical prompt texts and its response cache hashes only
    the text, which would give two people the same answer (so do not use lm-eval's
    ``--use_cache`` with it). ``--model_args steerer=FOLDER`` loads a saved module.
    """

    def __init__(self, steerer: Steerer | str | None = None, **kwargs):
        super().__init__(**kwargs)
        if steerer is None:
            raise ValueError("persona-bench-steered needs steerer=<folder of a saved steering module>")
        module = steerer if isinstance(steerer, Steerer) else load_steerer(Path(steerer))
        self.steerer = module.to(self.device).eval()
        self.steerer_fingerprint = weights_fingerprint(self.steerer)

    def steering_for(self, request) -> tuple[str, object]:
        persona = np.asarray(request.doc["persona"], dtype=np.float32)
        return hashlib.sha256(self.steerer_fingerprint.encode() + persona.tobytes()).hexdigest()[:24], persona

    def steering_batch(self, payloads: list[object]) -> Steering:
        return self.steerer.steering(torch.from_numpy(np.stack(payloads)).to(self.device))
