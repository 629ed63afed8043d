"""``persona-bench-lm``: an lm-eval model that scores answer letters at forward-pass speed.

Stock ``HFLM`` already runs one forward per distinct context, but it computes the LM head and
a full-vocabulary log-softmax at every position of every row. Here:

* each distinct (steering key, input tokens) row is run once, and the LM head and
  log-softmax are applied only at the positions whose next token is scored (for a one-token
  answer letter: the last position), so all letters of a question share one forward;
* rows are length-bucketed (sorted, batched by a token budget, right-padded);
* tokenisation is cached, and scores persist in an SQLite cache keyed by the model
  fingerprint, the steering key and the request text, so identical prompts are scored once
  across methods and runs, and an interrupted run resumes where it stopped.

Tokenisation follows lm-eval's ``TemplateLM`` (same ``_encode_pair``), so the log-probs equal
``HFLM``'s (benchmarks/bench_scoring.py checks it to 1e-4). Subclasses steer the model by
overriding :meth:`request_key` (what, besides the text, makes a request distinct) and
:meth:`body_inputs` (the transformer body's inputs, e.g. with a per-row prefix cache).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from .models import cache_root, load_model


def model_fingerprint(model) -> str:
    """Identity of a model's weights and config for the score cache."""
    folder = Path(str(model.config.name_or_path))
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights if p.is_file()]
    payload = json.dumps([str(folder.resolve()), model.config.to_json_string(), str(model.dtype), stamp], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class ScoreCache:
    """Persistent (key -> log-prob, greedy) store in SQLite; commits after every batch."""

    def __init__(self, path: Path | None):
        self.connection = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(str(path), timeout=60)
            self.connection.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, logprob REAL, greedy INTEGER)")

    def get_many(self, keys: list[str]) -> dict[str, tuple[float, bool]]:
        if self.connection is None or not keys:
            return {}
        found = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.connection.execute(
                f"SELECT key, logprob, greedy FROM scores WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update({key: (logprob, bool(greedy)) for key, logprob, greedy in rows})
        return found

    def put_many(self, items: dict[str, tuple[float, bool]]) -> None:
        if self.connection is None or not items:
            return
        with self.connection:
            self.connection.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", [(k, lp, int(g)) for k, (lp, g) in items.items()]
            )


@register_model("persona-bench-lm")
class LetterScoringLM(TemplateLM):
    """A frozen Hugging Face causal LM scoring continuations (see module docstring)."""

    def __init__(
        self,
        pretrained: str = "smollm2-135m",
        device: str = "auto",
        dtype: str = "auto",
        batch_tokens: int = 8192,
        score_cache: str | None = "default",
        trust_remote_code: bool = False,
        model=None,
        tokenizer=None,
    ):
        super().__init__()
        if model is None:
            model, tokenizer = load_model(pretrained, device, dtype, trust_remote_code=bool(trust_remote_code))
        self.model, self.tokenizer = model, tokenizer
        self.body = getattr(model, model.base_model_prefix)
        self.head = model.get_output_embeddings()
        self.batch_tokens = int(batch_tokens)
        self.fingerprint = model_fingerprint(model)
        cache_path = cache_root() / "scores.sqlite" if score_cache == "default" else Path(score_cache) if score_cache else None
        self.cache = ScoreCache(cache_path)
        self.max_length = int(getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 2048))
        self._encode = lru_cache(maxsize=200_000)(self._encode_uncached)
        self._pending_keys: list[str] | None = None

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
        return list(self._encode(string, add_special_tokens))

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt, continue_final_message=not add_generation_prompt
        )

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("persona-bench-lm scores multiple-choice continuations only")

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("persona-bench-lm scores multiple-choice continuations only")

    # ----------------------------------------------------------------- steering hooks
    def request_key(self, request) -> str:
        """What besides the text distinguishes a request (nothing for an unsteered model)."""
        return ""

    def body_inputs(self, keys: list[str], input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[dict, int]:
        """Inputs of the transformer body for rows steered by ``keys``, and how many positions
        its output has before the first token (virtual tokens fed as embeddings)."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}, 0

    # ----------------------------------------------------------------- scoring
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self._pending_keys = [self.request_key(request) for request in requests]
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        finally:
            self._pending_keys = None

    def cache_key(self, steer: str, context: str, continuation: str) -> str:
        return hashlib.sha256("\x1f".join((self.fingerprint, steer, context, continuation)).encode()).hexdigest()

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        keys = self._pending_keys or [""] * len(requests)
        cache_keys = [self.cache_key(k, ctx, cont) for k, ((ctx, cont), _, _) in zip(keys, requests)]
        results: dict[str, tuple[float, bool]] = self.cache.get_many(list(dict.fromkeys(cache_keys)))
        rows: OrderedDict[tuple[str, tuple[int, ...]], list[tuple[str, tuple[int, ...]]]] = OrderedDict()
        queued: set[str] = set()
        for steer, cache_key, (_, context_enc, continuation_enc) in zip(keys, cache_keys, requests):
            if cache_key in results or cache_key in queued:
                continue
            queued.add(cache_key)
            whole = (tuple(context_enc) + tuple(continuation_enc))[-(self.max_length + 1) :]
            row = rows.setdefault((steer, whole[:-1]), [])
            row.append((cache_key, tuple(continuation_enc)))
        for batch in tqdm(self.length_batches(list(rows)), disable=True if disable_tqdm or not rows else None, desc="scoring", unit="batch"):
            results_batch = self.score_rows(batch, [rows[r] for r in batch])
            self.cache.put_many(results_batch)
            results.update(results_batch)
        return [results[k] for k in cache_keys]

    def length_batches(self, rows: list[tuple[str, tuple[int, ...]]]) -> list[list[tuple[str, tuple[int, ...]]]]:
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
    def score_rows(self, batch: list[tuple[str, tuple[int, ...]]], wanted: list[list[tuple[str, tuple[int, ...]]]]) -> dict:
        """Forward a batch of rows once; log-probs only where a continuation token is scored."""
        width = max(len(tokens) for _, tokens in batch)
        input_ids = torch.full((len(batch), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (_, tokens) in enumerate(batch):
            input_ids[i, : len(tokens)] = torch.tensor(tokens)
            attention_mask[i, : len(tokens)] = 1
        device = self.device
        inputs, offset = self.body_inputs([steer for steer, _ in batch], input_ids.to(device), attention_mask.to(device))
        hidden = self.body(**inputs, use_cache=False).last_hidden_state[:, offset:]
        row_index, positions, targets, owners = [], [], [], []
        for i, ((_, tokens), requests) in enumerate(zip(batch, wanted)):
            for cache_key, continuation in requests:
                start = len(tokens) - len(continuation) + 1
                for offset, token in enumerate(continuation):
                    row_index.append(i)
                    positions.append(start - 1 + offset)
                    targets.append(token)
                    owners.append(cache_key)
        logits = self.head(hidden[torch.tensor(row_index, device=device), torch.tensor(positions, device=device)])
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        targets_t = torch.tensor(targets, device=device)
        picked = logprobs.gather(1, targets_t[:, None])[:, 0].cpu().tolist()
        greedy = (logprobs.argmax(dim=-1) == targets_t).cpu().tolist()
        out: dict[str, tuple[float, bool]] = {}
        for owner, value, is_greedy in zip(owners, picked, greedy):
            total, all_greedy = out.get(owner, (0.0, True))
            out[owner] = (total + value, all_greedy and is_greedy)
        return out
