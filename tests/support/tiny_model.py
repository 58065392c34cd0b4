"""A tiny random-weight llama GGUF for a real llama-server: it loads in a blink and generates gibberish fast.

Tests use it for structure and numbers (token counts, rates, slots), never for text. The tokenizer is the real
llama SPM vocabulary (copied from llama.cpp's vocab-only test file), so prompts tokenize as they would for a real
model, and a ChatML template makes /v1/chat/completions work.
"""

from __future__ import annotations

import os
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

N_EMBD = 128
N_LAYER = 2
N_HEAD = 4
N_FF = 256
N_CTX = 2048
SEED = 20241123
MODEL_NAME = "tiny-llama-test"


def write_tiny_model(vocab_gguf: Path, out: Path, seed: int = SEED) -> Path:
    """Write the model to `out` (atomically: a half-written file never has the final name)."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(vocab_gguf))
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(MODEL_NAME)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    n_vocab = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            values = field.contents()
            n_vocab = max(n_vocab, len(values)) if key == "tokenizer.ggml.tokens" else n_vocab
            writer.add_key_value(key, values, vtype, sub_type=field.types[1])
        else:
            writer.add_key_value(key, field.contents(), vtype)
    if not n_vocab:
        raise ValueError(f"{vocab_gguf} has no tokenizer.ggml.tokens")
    writer.add_vocab_size(n_vocab)
    writer.add_chat_template(CHATML_TEMPLATE)

    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    ones = np.ones(N_EMBD, dtype=np.float32)
    writer.add_tensor("token_embd.weight", weights(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        for part in ("q", "k", "v", "output"):
            writer.add_tensor(f"blk.{i}.attn_{part}.weight", weights(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", weights(n_vocab, N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)
    return out


def ensure_tiny_model(vocab_gguf: Path, cache_dir: Path) -> Path:
    """The model file in `cache_dir`, written on first use (the name changes when the recipe does)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"tiny-llama-e{N_EMBD}-l{N_LAYER}-h{N_HEAD}-s{SEED}.gguf"
    if not out.exists():
        write_tiny_model(vocab_gguf, out)
    return out
