"""A thin, typed adapter over the few TensorRT calls the back-end makes, for TensorRT 8, 10 and 11.

What changed between them, and what we do (the plan is a pure function of the module's API shape,
so it is tested here without TensorRT, on module stand-ins shaped like each release):

| | TensorRT 8.x | 10.x | 11.x |
|---|---|---|---|
| network creation | `EXPLICIT_BATCH` flag needed | explicit batch always | explicit batch always |
| FP16 | `BuilderFlag.FP16` | `BuilderFlag.FP16`, or strongly typed | strongly typed only (no `BuilderFlag.FP16`) |
| context memory | static | `ExecutionContextAllocationStrategy` | same |

FP16 is built the same way wherever `NetworkDefinitionCreationFlag.STRONGLY_TYPED` exists (9.x on):
from the mixed-precision ONNX (`engine.onnx_fp16`), strongly typed, so TensorRT 10 and 11 run the
same precisions; only a TensorRT without it (8.x) falls back to the FP32 graph + `BuilderFlag.FP16`.
Every call whose return value reports failure is checked (`check`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BUILD_RECIPE = 3  # bump whenever what `plan_build` or the back-end's build does changes: it keys the engine cache


@dataclass(frozen=True)
class BuildPlan:
    """How to build an engine: which ONNX graph ("fp32" or "mixed-fp16"), network flags, builder flags."""

    onnx: str
    strongly_typed: bool
    fp16_flag: bool
    explicit_batch_flag: bool

    def describe(self) -> str:
        return (f"{self.onnx} ONNX, {'strongly typed' if self.strongly_typed else 'weakly typed'}"
                f"{', BuilderFlag.FP16' if self.fp16_flag else ''}")


def major_version(trt: Any) -> int:
    """TensorRT's major version from `trt.__version__` ("10.13.0.35" → 10); 0 when unreadable."""
    try:
        return int(str(getattr(trt, "__version__", "0")).split(".")[0])
    except ValueError:
        return 0


def plan_build(trt: Any, precision: str) -> BuildPlan:
    """The build plan for this TensorRT module and precision ("fp16" or "fp32"); ValueError otherwise."""
    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision must be fp16 or fp32, not {precision!r}")
    flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
    strongly = flags is not None and hasattr(flags, "STRONGLY_TYPED")
    explicit = major_version(trt) < 10 and flags is not None and hasattr(flags, "EXPLICIT_BATCH")
    has_fp16_flag = hasattr(getattr(trt, "BuilderFlag", None), "FP16")
    if precision == "fp32":
        return BuildPlan("fp32", False, False, explicit)
    if strongly:
        return BuildPlan("mixed-fp16", True, False, explicit)
    if has_fp16_flag:
        return BuildPlan("fp32", False, True, explicit)
    raise ValueError(f"TensorRT {getattr(trt, '__version__', '?')} offers neither strongly typed networks "
                     "nor BuilderFlag.FP16; use precision fp32")


def network_flags(trt: Any, plan: BuildPlan) -> int:
    """The `create_network` flags of a plan."""
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def apply_builder_flags(trt: Any, config: Any, plan: BuildPlan) -> None:
    """Set the plan's builder flags on a builder config."""
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)


def create_context(trt: Any, engine: Any) -> Any:
    """An execution context whose device memory is sized for its own profile when it is switched to
    (TensorRT ≥ 10: `ON_PROFILE_CHANGE`), not statically for the largest profile; else the default."""
    strategy = getattr(getattr(trt, "ExecutionContextAllocationStrategy", None), "ON_PROFILE_CHANGE", None)
    ctx = engine.create_execution_context(strategy) if strategy is not None else engine.create_execution_context()
    return check(ctx, "create_execution_context")


def check(result: Any, what: str) -> Any:
    """TensorRT reports many failures by returning False or None: raise RuntimeError naming the call."""
    if result is None or result is False:
        raise RuntimeError(f"TensorRT {what} failed (see TensorRT's log)")
    return result
