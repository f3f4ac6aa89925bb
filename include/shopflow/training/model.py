"""The category classifier: a pretrained encoder (AutoModelForSequenceClassification, top-level head) plus a
second head for the second level, saved as a `save_pretrained` directory with its label map and calibration."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

LABEL_MAP = "label_map.json"
L2_HEAD = "l2_head.pt"


class CategoryClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_l2: int):
        super().__init__()
        self.encoder = encoder
        self.l2_head = nn.Sequential(nn.Dropout(0.1), nn.Linear(encoder.config.hidden_size, n_l2))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states[-1]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # MiniLM was trained with mean pooling
        return out.logits, self.l2_head(pooled)


@dataclass
class LabelMap:
    top: list[str]
    l2: list[str]
    max_length: int
    temperature_top: float = 1.0
    temperature_l2: float = 1.0

    def to_json(self) -> dict:
        return self.__dict__.copy()


def build(base_model: str, labels: LabelMap) -> tuple[CategoryClassifier, object]:
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    encoder = AutoModelForSequenceClassification.from_pretrained(
        base_model,
        num_labels=len(labels.top),
        id2label=dict(enumerate(labels.top)),
        label2id={label: i for i, label in enumerate(labels.top)},
        dtype=torch.float32,
    )
    return CategoryClassifier(encoder, len(labels.l2)), tokenizer


def save(model: CategoryClassifier, tokenizer, labels: LabelMap, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    torch.save(model.l2_head.state_dict(), directory / L2_HEAD)
    (directory / LABEL_MAP).write_text(json.dumps(labels.to_json(), indent=2, sort_keys=True))
    return directory


def load(directory: Path, device: str = "cpu") -> tuple[CategoryClassifier, object, LabelMap]:
    labels = LabelMap(**json.loads((Path(directory) / LABEL_MAP).read_text()))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    encoder = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32)
    model = CategoryClassifier(encoder, len(labels.l2))
    model.l2_head.load_state_dict(torch.load(Path(directory) / L2_HEAD, map_location="cpu"))
    return model.to(device).eval(), tokenizer, labels
