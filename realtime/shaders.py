"""The renderer's GLSL programs: sources read from the repository's `shaders/<name>.<stage>.glsl`
(once per process) and compiled into moderngl programs, with optional `#define` variants."""
from __future__ import annotations

import functools
from pathlib import Path

import moderngl

from engine.errors import UserError

SHADER_DIR = Path(__file__).resolve().parent.parent / "shaders"


@functools.lru_cache(maxsize=None)
def shader_source(name: str) -> str:
    """Text of `shaders/<name>.glsl`, read once per process."""
    path = SHADER_DIR / f"{name}.glsl"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"shader {path} is missing or unreadable ({exc.strerror}); "
                        "restore the repository's shaders/ folder") from None


def with_defines(source: str, defines: tuple[str, ...] = ()) -> str:
    """`source` with a `#define NAME 1` line per name inserted after its first (`#version`) line."""
    version, _, body = source.partition("\n")
    return version + "\n" + "".join(f"#define {d} 1\n" for d in defines) + body


def load_program(ctx: moderngl.Context, name: str, defines: tuple[str, ...] = ()) -> moderngl.Program:
    """Compile `shaders/<name>.vert.glsl` + `shaders/<name>.frag.glsl` into a program; each name in
    `defines` becomes a `#define NAME 1` line after the `#version` line (variants of one source)."""
    return ctx.program(vertex_shader=with_defines(shader_source(f"{name}.vert"), defines),
                       fragment_shader=with_defines(shader_source(f"{name}.frag"), defines))
