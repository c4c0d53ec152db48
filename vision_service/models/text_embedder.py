"""all-MiniLM-L6-v2 (int8 ONNX): sentence embeddings, 384-d, mean-pooled over the attention
mask and L2-normalised, so cosine similarity is a dot product."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from vision_service.models.classifier import l2_normalise
from vision_service.registry import ModelEntry
from vision_service.sessions import SessionThreads, open_session

EMBEDDING_DIM = 384
# The sentence-transformers model card's max_seq_length; longer texts are truncated.
MAX_TOKENS = 256


class TextEmbedder:
    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer) -> None:
        self._session = session
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        # Pad to the longest text of each batch, not to a fixed 128: queries are short.
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, entry: ModelEntry, threads: SessionThreads) -> TextEmbedder:
        tokenizer = Tokenizer.from_file(str(entry.path("tokenizer")))
        return cls(open_session(entry.path("onnx"), threads), tokenizer)

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32[len(texts), 384], each row of unit length."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return l2_normalise(pooled.astype(np.float32))
