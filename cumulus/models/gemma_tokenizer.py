"""Gemma's tokenizer rebuilt from a GGUF file, with a chat template for the pretrained model.

transformers (5.x) reads a Gemma GGUF's vocabulary but not its merges: GGUF stores a
SentencePiece-BPE model as pieces with scores (the score is the merge rank), and the loader hands
``GemmaTokenizer`` a placeholder merge list, so every word falls apart into single characters
("The capital of France is" -> 24 tokens instead of 5, and the model sees text it never saw in
training). Here the merges are derived from the scores the way transformers converts a
SentencePiece file (``generate_merges``: a piece's merge ranks by the piece's own score), and the
control and user-defined pieces (``<start_of_turn>``, runs of newlines) become added tokens, as in
Google's own tokenizer.json.

The packaged model is Gemma 3 270M *pretrained*: it ships no chat template. A LoRA student is taught
the format by its training data, so any fixed template works as long as training and serving render
the same one; Gemma's instruction format is used so the turn markers are the pieces Google reserved
for it. The template leaves ``<bos>`` to the tokenizer (it adds one per encode) and the answer ends
with ``<end_of_turn>``, which is therefore the eos token: the trainer appends it to every answer and
the engine stops on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Gemma's turn format. Gemma has no system role: a system message opens the first user turn.
# Tool calls and results are plain text here (cumulus.prompts inlines them for templates without
# tool support), so the template only needs user and assistant turns.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{%- set ns.system = message['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}"
    "{{ '<start_of_turn>' + role + '\n' + ns.system }}"
    "{{ (message['content'] or '') | trim + '<end_of_turn>\n' }}"
    "{%- set ns.system = '' -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
END_OF_TURN = "<end_of_turn>"

_CONTROL, _USER_DEFINED = 3, 4
"""GGUF token types (llama.cpp's ``LLAMA_TOKEN_TYPE_*``)."""


def gemma_tokenizer(gguf_path: Path) -> Any:
    """A ``GemmaTokenizer`` equivalent to the one Google ships, read from ``gguf_path``."""
    from gguf import GGUFReader
    from tokenizers import AddedToken
    from transformers import GemmaTokenizer
    from transformers.convert_slow_tokenizer import generate_merges

    reader = GGUFReader(gguf_path)
    pieces = _strings(reader, "tokenizer.ggml.tokens")
    scores = [float(v[0]) for v in _values(reader, "tokenizer.ggml.scores")]
    types = [int(v[0]) for v in _values(reader, "tokenizer.ggml.token_type")]
    # SentencePiece writes a piece of spaces as spaces; the tokenizer's normalizer has turned every
    # space into U+2581 before the model sees it, so the piece must be spelled that way too.
    pieces = ["\u2581" * len(p) if p and not p.strip(" ") else p for p in pieces]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    merges = generate_merges(vocab, list(zip(pieces, scores, strict=True)))
    tokenizer: Any = GemmaTokenizer(
        vocab=vocab, merges=merges, add_bos_token=True, clean_up_tokenization_spaces=False
    )
    tokenizer.add_tokens(
        [
            AddedToken(p, special=t == _CONTROL, normalized=False)
            for p, t in zip(pieces, types, strict=True)
            if t in (_CONTROL, _USER_DEFINED) and p.strip("\u2581")
        ]
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token = END_OF_TURN
    return tokenizer


def _values(reader: Any, key: str) -> list[Any]:
    field = reader.fields[key]
    return [field.parts[i] for i in field.data]


def _strings(reader: Any, key: str) -> list[str]:
    return [bytes(part).decode("utf-8") for part in _values(reader, key)]
