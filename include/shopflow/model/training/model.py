"""The fine-tuned category classifier: a pretrained encoder, mean pooling over its last hidden states, and two
linear heads (top level and second level), saved as a `save_pretrained` encoder directory with the heads, the label
map and the calibration beside it.

Both heads read the mean-pooled sentence vector: all-MiniLM-L6-v2 was trained with mean pooling and its checkpoint's
pooler (the CLS head that AutoModelForSequenceClassification reads) was never trained (`pooler.dense.bias` is 0).

`build(..., warm_start=DIR)` starts from an earlier fine-tune instead of the base model, so daily CPU budgets add
up: the encoder always, the heads too when the label sets match (otherwise the heads start fresh).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

LABEL_MAP = "label_map.json"
HEADS = "heads.pt"


class CategoryClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_top: int, n_l2: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.top_head = nn.Linear(hidden, n_top)
        self.l2_head = nn.Linear(hidden, n_l2)

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.top_head.parameters(), *self.l2_head.parameters()]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = self.dropout((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        return self.top_head(pooled), self.l2_head(pooled)


@dataclass
class LabelMap:
    top: list[str]
    l2: list[str]
    max_length: int
    temperature_top: float = 1.0
    temperature_l2: float = 1.0

    def to_json(self) -> dict:
        return self.__dict__.copy()

    @classmethod
    def read(cls, directory: Path) -> "LabelMap":
        return cls(**json.loads((Path(directory) / LABEL_MAP).read_text()))


def build(base_model: str, labels: LabelMap, warm_start: Path | str | None = None,
          log=print) -> tuple[CategoryClassifier, object]:
    """A classifier from the base model, or from an earlier fine-tune (`warm_start`, a directory `save` wrote)."""
    if warm_start is not None and (Path(warm_start) / HEADS).is_file():
        earlier = LabelMap.read(warm_start)
        tokenizer = AutoTokenizer.from_pretrained(warm_start)
        encoder = AutoModel.from_pretrained(warm_start, dtype=torch.float32)
        model = CategoryClassifier(encoder, len(labels.top), len(labels.l2))
        if earlier.top == labels.top and earlier.l2 == labels.l2:
            model.load_state_dict(torch.load(Path(warm_start) / HEADS, map_location="cpu"), strict=False)
            log(f"warm start from {warm_start}: encoder and both heads")
        else:
            log(f"warm start from {warm_start}: encoder only (the label sets changed, the heads start fresh)")
        return model, tokenizer
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    encoder = AutoModel.from_pretrained(base_model, dtype=torch.float32)
    return CategoryClassifier(encoder, len(labels.top), len(labels.l2)), tokenizer


def save(model: CategoryClassifier, tokenizer, labels: LabelMap, directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    heads = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    torch.save(heads, directory / HEADS)
    (directory / LABEL_MAP).write_text(json.dumps(labels.to_json(), indent=2, sort_keys=True))
    return directory


def load(directory: Path, device: str = "cpu") -> tuple[CategoryClassifier, object, LabelMap]:
    labels = LabelMap.read(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    encoder = AutoModel.from_pretrained(directory, dtype=torch.float32)
    model = CategoryClassifier(encoder, len(labels.top), len(labels.l2))
    model.load_state_dict(torch.load(Path(directory) / HEADS, map_location="cpu"), strict=False)
    return model.to(device).eval(), tokenizer, labels
