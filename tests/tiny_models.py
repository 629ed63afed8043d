"""Tiny random causal LMs of every supported architecture, with a small byte-level BPE.

The tokenizer is trained in a blink on the demo survey's prompts, so " A", " B", ... are
single tokens as in real vocabularies; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from persona_bench.harness.data.loaders.demo import generate_demo
from persona_bench.tasks.prompts import LETTERS, demographics_prompt, question_block

ARCHITECTURES = {
    "llama": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
    "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
    "gpt_neo": dict(hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]], window_size=16),
    "gptj": dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4),
    "falcon": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, multi_query=True, new_decoder_architecture=False),
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4),
}



def randomise_lora_b(model: torch.nn.Module, seed: int) -> None:
    """Seeded random LoRA B weights (peft starts them at zero), so the adapter changes the model."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)


def training_architectures(default: str = "llama") -> list:
    """Every architecture for a test that trains: ``default`` (SmolLM2's) in the default suite, the
    others marked ``slow`` (CI runs them; the exact-equivalence tests cover every one by default)."""
    return [name if name == default else pytest.param(name, marks=pytest.mark.slow) for name in ARCHITECTURES]


CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A 600-token byte-level BPE trained on demo prompts."""
    survey = generate_demo(n_people=200).survey
    person = survey.respondents.iloc[0][list(survey.traits)].to_dict()
    texts = [
        demographics_prompt({"question": q.text, "options": list(q.options), "traits": person}) + "\nAnswer: " + " ".join(LETTERS[:8])
        for q in survey.questions.values()
    ] + [question_block("Here are your answers to some earlier survey questions.", ["Answer the next question"])]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts * 2, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_tiny_model(architecture: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random ``architecture`` model plus the tiny tokenizer into ``folder``."""
    tokenizer = tiny_tokenizer()
    config = AutoConfig.for_model(
        architecture, vocab_size=len(tokenizer), max_position_embeddings=1024, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **ARCHITECTURES[architecture],
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
