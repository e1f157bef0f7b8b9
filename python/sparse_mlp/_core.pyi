"""Type stubs of the compiled module sparse_mlp._core (the Rust core)."""

from typing import Any, Callable, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Self

__all__ = [
    "Network",
    "set_num_threads",
    "get_num_threads",
    "er_nnz",
    "parameter_bytes",
    "simd_level",
    "bench_layer",
    "remap_values",
    "union_average",
    "rigl_top",
    "to_bfloat16",
    "from_bfloat16",
    "__version__",
    "MAX_INDEX",
    "NAMES",
]
__version__: str
MAX_INDEX: int
NAMES: dict[str, Any]

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def er_nnz(epsilon: float, n_in: int, n_out: int) -> int: ...
def to_bfloat16(src: npt.NDArray[np.float32]) -> npt.NDArray[np.uint16]: ...
def from_bfloat16(src: npt.NDArray[np.uint16], out: npt.NDArray[np.float32]) -> None: ...
def rigl_top(
    candidates: npt.NDArray[np.uint64], sums: npt.NDArray[np.float32], k: int, seed: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]: ...
def parameter_bytes(sizes: list[int], nnz: list[int]) -> int: ...
def simd_level() -> str: ...
def bench_layer(
    n_in: int, n_out: int, epsilon: float, batch_size: int, repeats: int = 20, seed: int = 0,
    precision: str = "float32",
) -> tuple[list[float], int]: ...
def remap_values(
    from_col_ptr: npt.NDArray[np.int64],
    from_row_idx: npt.NDArray[np.uint32] | npt.NDArray[np.int64],
    values: npt.NDArray[np.float32],
    to_col_ptr: npt.NDArray[np.int64],
    to_row_idx: npt.NDArray[np.uint32] | npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float32], int]: ...

def union_average(
    replicas: list[
        tuple[
            npt.NDArray[np.int64],
            npt.NDArray[np.uint32] | npt.NDArray[np.int64],
            npt.NDArray[np.float32],
        ]
    ],
    n_in: int,
    target_nnz: int,
) -> tuple[
    tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32], npt.NDArray[np.float32]], int
]: ...

@final
class Network:
    def __new__(
        cls,
        sizes: list[int],
        nnz: list[int],
        activations: list[tuple[str, float]],
        loss: str,
        output_activation: str,
        dropout: float,
        init: str,
        seed: int,
    ) -> Self: ...
    @staticmethod
    def from_state(
        layers: list[dict],
        activations: list[tuple[str, float]],
        loss: str,
        output_activation: str,
        dropout: float,
        init: str,
        seed: int,
        rng_state: list[int],
        step: int,
        topology_version: int,
        optimizer: str = "sgd",
        optimizer_steps: int = 0,
    ) -> Network: ...
    @property
    def sizes(self) -> list[int]: ...
    @property
    def layer_nnz(self) -> list[int]: ...
    @property
    def n_connections(self) -> int: ...
    @property
    def activations(self) -> list[tuple[str, float]]: ...
    @property
    def loss(self) -> tuple[str, str]: ...
    @property
    def dropout(self) -> float: ...
    @property
    def init(self) -> str: ...
    @property
    def run_state(self) -> tuple[int, list[int], int, int]: ...
    @property
    def optimizer_state(self) -> tuple[str, int]: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def layer_bytes(self) -> list[int]: ...
    @property
    def precision(self) -> str: ...
    def set_precision(self, precision: str) -> None: ...
    def training_bytes(self, batch: int) -> int: ...
    def inference_bytes(self, batch: int) -> int: ...
    def inference_batch(self) -> int: ...
    def set_profiling(self, enabled: bool) -> None: ...
    @property
    def profile(self) -> dict[str, Any] | None: ...
    def train_epoch(
        self,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64] | npt.NDArray[np.float32],
        batch_size: int,
        learning_rate: float,
        momentum: float,
        weight_decay: float,
        nesterov: bool = False,
        shuffle: bool = True,
        progress: Callable[[int], object] | None = None,
        order: npt.NDArray[np.int64] | None = None,
        midpoint: tuple[float, str, str] | None = None,
        bias_decay: bool = True,
        optimizer: str = "sgd",
        betas: tuple[float, float] | None = None,
        eps: float = 1e-8,
        rates: npt.NDArray[np.float32] | None = None,
        sample_weight: npt.NDArray[np.float32] | None = None,
    ) -> dict[str, float]: ...
    def evaluate(
        self,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64] | npt.NDArray[np.float32],
        batch_size: int | None = None,
        sample_weight: npt.NDArray[np.float32] | None = None,
    ) -> tuple[float, float]: ...
    def predict_proba(
        self, x: npt.NDArray[np.float32], batch_size: int | None = None
    ) -> npt.NDArray[np.float32]: ...
    def gradients(
        self,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64] | npt.NDArray[np.float32],
        dropout: bool = False,
        sample_weight: npt.NDArray[np.float32] | None = None,
    ) -> tuple[float, list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]]: ...
    @property
    def packed_len(self) -> int: ...
    def pack_params(self, out: npt.NDArray[np.float32]) -> None: ...
    def unpack_params(self, src: npt.NDArray[np.float32]) -> None: ...
    def gradient_step(
        self,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64] | npt.NDArray[np.float32],
        out: npt.NDArray[np.float32],
        sample_weight: npt.NDArray[np.float32] | None = None,
    ) -> tuple[float, int]: ...
    def apply_packed_gradient(
        self,
        g: npt.NDArray[np.float32],
        learning_rate: float,
        momentum: float,
        weight_decay: float,
        nesterov: bool = False,
        bias_decay: bool = True,
        optimizer: str = "sgd",
        betas: tuple[float, float] | None = None,
        eps: float = 1e-8,
    ) -> None: ...
    def reseed(self, seed: int) -> None: ...
    def evolve_set(self, zeta: float, layers: list[int] | None = None) -> list[tuple[int, int]]: ...
    def neuron_importance(self, h: int) -> npt.NDArray[np.float64]: ...
    def rigl_exact(
        self, l: int, a: npt.NDArray[np.float32], delta: npt.NDArray[np.float32], k: int, seed: int
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]: ...
    def rigl_candidates(self, l: int, count: int, seed: int) -> npt.NDArray[np.uint64]: ...
    def rigl_accumulate(
        self,
        l: int,
        candidates: npt.NDArray[np.uint64],
        a: npt.NDArray[np.float32],
        delta: npt.NDArray[np.float32],
        sums: npt.NDArray[np.float32],
    ) -> None: ...
    def rigl_prune_grow(
        self,
        l: int,
        zeta: float,
        positions: npt.NDArray[np.uint64],
        grads: npt.NDArray[np.float32],
        init_lr: float | None = None,
    ) -> tuple[int, int, npt.NDArray[np.uint64]]: ...
    def rigl_open(
        self,
        layers: list[int],
        zeta: float,
        step: int,
        candidates: float | None = None,
        seed: int | None = None,
    ) -> None: ...
    def rigl_take_sums(self) -> npt.NDArray[np.float32]: ...
    def rigl_add_sums(self, sums: npt.NDArray[np.float32], batches: int) -> None: ...
    def rigl_update(
        self, zeta: float, init_lr: float | None = None, keep: list[npt.NDArray[np.uint64]] = ...
    ) -> list[tuple[int, int, int, npt.NDArray[np.uint64], int]]: ...
    def rigl_window(self) -> tuple[int, int, list[dict[str, Any]], int] | None: ...
    def set_rigl_window(self, window: tuple[int, int, list[dict[str, Any]], int] | None) -> None: ...
    def remove_neurons(self, h: int, ids: npt.NDArray[np.int64], shrink: bool = True) -> None: ...
    def epoch_order(self, n: int, shuffle: bool = True) -> npt.NDArray[np.int64]: ...
    def neuron_magnitudes(self, h: int) -> npt.NDArray[np.float64]: ...
    def select_neurons(
        self,
        scores: npt.NDArray[np.float64],
        eligible: npt.NDArray[np.bool_],
        rule: str,
        amount: float,
    ) -> npt.NDArray[np.int64]: ...
    def recycle_neurons(
        self,
        h: int,
        ids: npt.NDArray[np.int64],
        reinit: str = "initial",
        outgoing: str = "reinit",
        interpolate_steps: int = 0,
    ) -> tuple[int, int]: ...
    def protect_neurons(self, h: int, ids: npt.NDArray[np.int64]) -> None: ...
    def track_activity(self, enabled: bool, utility_decay: float | None = None) -> None: ...
    def activity(
        self, h: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]: ...
    def reset_activity(self) -> None: ...
    def recycling_state(self) -> dict[str, npt.NDArray[Any]]: ...
    def set_recycling_state(self, state: dict[str, npt.NDArray[Any]]) -> None: ...
    @property
    def pending_blends(self) -> int: ...
    def midpoint_loss(self, weight: float, midpoint: str, distance: str) -> float: ...
    def layer_state(self, l: int) -> dict: ...
    def set_layer_values(
        self, l: int, values: npt.NDArray[np.float32], bias: npt.NDArray[np.float32] | None = None
    ) -> None: ...
