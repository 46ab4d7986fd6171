"""Typed stubs of lrfind's Rust core (checked by ``python -m mypy.stubtest lrfind._core``)."""

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypedDict, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Unpack

_Floats = npt.ArrayLike
_Methods = str | Sequence[str] | Mapping[str, Mapping[str, Any] | None] | None

__all__ = [
    "analyze",
    "analyze_batch",
    "analyze_texts",
    "confidence_level",
    "csv_rows",
    "json_rows",
    "ema",
    "log_gradient",
    "one_cycle",
    "one_cycle_at",
    "suggest",
    "sweep_lrs",
    "warmup_cosine",
    "warmup_cosine_at",
    "Analysis",
    "BatchAnalysis",
    "Diagnosis",
    "DivergenceDetector",
    "Ema",
    "Suggestion",
    "METHODS",
]

METHODS: list[str]

@final
class Suggestion:
    @property
    def lr(self) -> float | None: ...
    @property
    def index(self) -> int | None: ...
    @property
    def method(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def confidence(self) -> float | None: ...
    @property
    def range(self) -> tuple[float, float] | None: ...

@final
class Diagnosis:
    @property
    def kind(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def descent(self) -> tuple[float, float] | None: ...
    @property
    def gives_lr(self) -> bool: ...

@final
class Analysis:
    @property
    def stop_index(self) -> int: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def smoothed(self) -> npt.NDArray[np.float64]: ...
    @property
    def trend(self) -> npt.NDArray[np.float64]: ...
    @property
    def gradient(self) -> npt.NDArray[np.float64]: ...
    @property
    def suggestions(self) -> dict[str, Suggestion]: ...
    @property
    def suggested_lr(self) -> float | None: ...
    @property
    def min_loss(self) -> float: ...
    @property
    def lr_at_min(self) -> float: ...
    @property
    def diagnosis(self) -> Diagnosis: ...

@final
class BatchAnalysis:
    STOP_REASONS: ClassVar[tuple[str, ...]]
    DIAGNOSES: ClassVar[tuple[str, ...]]
    GIVES_LR: ClassVar[tuple[bool, ...]]
    @property
    def stop_index(self) -> npt.NDArray[np.int64]: ...
    @property
    def stop_reason(self) -> npt.NDArray[np.uint8]: ...
    @property
    def diagnosis(self) -> npt.NDArray[np.uint8]: ...
    @property
    def min_loss(self) -> npt.NDArray[np.float64]: ...
    @property
    def lr_at_min(self) -> npt.NDArray[np.float64]: ...
    @property
    def descent_low(self) -> npt.NDArray[np.float64]: ...
    @property
    def descent_high(self) -> npt.NDArray[np.float64]: ...
    @property
    def lr(self) -> dict[str, npt.NDArray[np.float64]]: ...
    @property
    def index(self) -> dict[str, npt.NDArray[np.int64]]: ...
    @property
    def confidence(self) -> dict[str, npt.NDArray[np.float64]]: ...
    @property
    def range_low(self) -> dict[str, npt.NDArray[np.float64]]: ...
    @property
    def range_high(self) -> dict[str, npt.NDArray[np.float64]]: ...
    def __len__(self) -> int: ...

@final
class Ema:
    def __new__(cls, alpha: float = 0.05, debias: bool = False) -> Ema: ...
    def update(self, x: float) -> float: ...
    @property
    def value(self) -> float | None: ...
    @property
    def count(self) -> int: ...

@final
class DivergenceDetector:
    def __new__(
        cls,
        threshold: float = 10.0,
        watch: str = "raw",
        alpha: float = 0.05,
        patience: int = 1,
        min_steps: int = 0,
        debias: bool = False,
    ) -> DivergenceDetector: ...
    def update(self, loss: float) -> bool: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def stop_index(self) -> int | None: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def best(self) -> float | None: ...
    @property
    def smoothed(self) -> float | None: ...
    @property
    def count(self) -> int: ...

def sweep_lrs(min_lr: float, max_lr: float, num_steps: int, mode: str = "exp") -> npt.NDArray[np.float64]: ...
def warmup_cosine(
    total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0
) -> npt.NDArray[np.float64]: ...
def warmup_cosine_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float: ...
def one_cycle(total_steps: int, base_lr: float, max_lr: float, pct_start: float = 0.3) -> npt.NDArray[np.float64]: ...
def one_cycle_at(step: int, total_steps: int, base_lr: float, max_lr: float, pct_start: float = 0.3) -> float: ...
def ema(values: _Floats, alpha: float = 0.05, debias: bool = False) -> npt.NDArray[np.float64]: ...
def log_gradient(lrs: _Floats, losses: _Floats) -> npt.NDArray[np.float64]: ...
def confidence_level(confidence: float) -> str: ...
def csv_rows(columns: Sequence[list[str] | npt.ArrayLike]) -> bytes: ...
def json_rows(fields: Mapping[str, Any], prefix: str = "", end: str = "\n") -> bytes:
    """One JSON object per row of ``fields`` (key -> dict of fields, list of str/None, 1-D float,
    int or bool array, or a pair of float arrays), each ``prefix + json.dumps(row) + end``."""

def suggest(lrs: _Floats, losses: _Floats, method: str = "auto", **params: Any) -> Suggestion: ...

class _AnalyzeOptions(TypedDict, total=False):
    """The keyword options of analyze and analyze_batch; defaults in their docstrings."""

    methods: _Methods
    threshold: float
    watch: str
    alpha: float
    debias: bool
    patience: int
    min_steps: int
    suggest_on: str
    arch: str | None
    min_points: int
    immediate_steps: int
    flat_tol: float
    noise_tol: float
    improving_tail: float
    range_drop: float

def analyze(lrs: _Floats, losses: _Floats, **options: Unpack[_AnalyzeOptions]) -> Analysis: ...
def analyze_batch(
    lrs: _Floats, losses: _Floats, offsets: npt.ArrayLike, **options: Unpack[_AnalyzeOptions]
) -> BatchAnalysis: ...
def analyze_texts(
    lrs: _Floats, losses: _Floats, offsets: npt.ArrayLike, **options: Unpack[_AnalyzeOptions]
) -> tuple[dict[str, list[str]], list[str]]:
    """The texts ``analyze_batch`` leaves out: (method label -> each sweep's suggestion reason,
    each sweep's diagnosis message), as ``analyze`` gives them on that sweep."""
