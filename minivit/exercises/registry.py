"""Every exercise, in the order to work through them: each builds on the ones before."""

from minivit.errors import UserError
from minivit.exercises import (
    attention,
    attention_core,
    block,
    cross_entropy,
    gelu,
    layernorm,
    linear,
    mlp,
    patch_embed,
    softmax,
    tokens,
    vit,
)

# one module per exercise, each defining EXERCISE
MODULES = (linear, softmax, cross_entropy, layernorm, gelu, mlp, patch_embed, tokens,
           attention_core, attention, block, vit)

EXERCISES = {m.EXERCISE.name: m.EXERCISE for m in MODULES}


def get_exercise(name: str, where: str = ""):
    """The exercise called ``name``; UserError listing the names when there is none."""
    if name not in EXERCISES:
        src = f"{where}: " if where else ""
        raise UserError(f"{src}no exercise called {name!r}; the exercises are "
                        f"{', '.join(EXERCISES)} (minivit exercise list)")
    return EXERCISES[name]


def number_of(name: str) -> int:
    """1 for the first exercise, 2 for the second, ..."""
    return list(EXERCISES).index(name) + 1


__all__ = ["EXERCISES", "MODULES", "get_exercise", "number_of"]
