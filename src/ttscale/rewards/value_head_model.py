"""The value head's model: a small MLP (or a linear layer) from a hidden state to a step's
value, in numpy, so that scoring needs no torch; saved and loaded as one ``.npz`` file.
Training it is ``ttscale.prm_training.head``'s job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ttscale.errors import ConfigError

HEAD_FILE = "head.npz"


@dataclass
class ValueHead:
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    w1: np.ndarray | None  # (d, h); None: a linear head
    b1: np.ndarray | None  # (h,)
    w2: np.ndarray  # (h,) or (d,)
    b2: float

    @property
    def inputs(self) -> int:
        return int(self.mean.shape[0])

    def logits(self, features: np.ndarray) -> np.ndarray:
        return self._forward(np.asarray(features, dtype=np.float32))[0]

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Each row's value in (0, 1)."""
        return sigmoid(self.logits(features))

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        z = (x - self.mean) / self.scale
        if self.w1 is None:
            return z @ self.w2 + self.b2, z, None
        pre = z @ self.w1 + self.b1
        hidden = np.maximum(pre, 0.0)
        return hidden @ self.w2 + self.b2, z, hidden

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale, "w2": self.w2,
                  "b2": np.array(self.b2, dtype=np.float32)}
        if self.w1 is not None:
            arrays |= {"w1": self.w1, "b1": self.b1}
        path = folder / HEAD_FILE
        np.savez_compressed(path, **{k: v.astype(np.float32) for k, v in arrays.items()})
        return path

    @classmethod
    def load(cls, folder: Path) -> ValueHead:
        path = folder / HEAD_FILE
        if not path.exists():
            raise ConfigError(f"no value head at {path}: give the folder `ttscale prm train` "
                              "wrote")
        with np.load(path) as data:
            hidden = "w1" in data
            return cls(data["mean"], data["scale"], data["w1"] if hidden else None,
                       data["b1"] if hidden else None, data["w2"], float(data["b2"]))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
