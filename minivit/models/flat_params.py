"""Named views into one flat buffer: a model's parameters (or gradients) as one contiguous 1-D
array, so that the optimizer, the gradient norm and the data-parallel gradient sum each run
as a few whole-buffer operations instead of one per tensor.

    layout = Layout.of({"w": (3, 4), "b": (4,)})       # names, shapes, offsets
    params = FlatDict(layout, xp.zeros(layout.size, "float32"))
    params["w"]                     # a (3, 4) view of params.flat[0:12]
    params["w"] = new_value         # copied into the view (same shape), never re-bound
    params.flat                     # the 1-D buffer

A FlatDict is a dict (the names in the layout's order) whose values always are the views:
assigning an entry copies into it, so the buffer and the named arrays never part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minivit.backend import array_module, host_xp, to_numpy


@dataclass(frozen=True)
class Layout:
    """Names, shapes and offsets of the tensors of one flat buffer, in order."""
    names: tuple
    shapes: tuple
    offsets: tuple
    size: int

    @classmethod
    def of(cls, shapes: dict) -> "Layout":
        names, sizes = tuple(shapes), [math.prod(s) for s in shapes.values()]
        offsets = tuple(sum(sizes[:i]) for i in range(len(sizes)))
        return cls(names, tuple(tuple(s) for s in shapes.values()), offsets, sum(sizes))

    def views(self, flat) -> dict:
        """{name: view of flat with that name's shape}."""
        return {k: flat[o:o + math.prod(s)].reshape(s)
                for k, s, o in zip(self.names, self.shapes, self.offsets)}

    def pack(self, arrays: dict, out=None):
        """The arrays (by name, in the layout's order) concatenated into one 1-D buffer."""
        first = arrays[self.names[0]]
        xp = array_module(first)
        parts = [arrays[k].reshape(-1) for k in self.names]
        if out is None:
            return xp.concatenate(parts) if parts else xp.zeros(0, first.dtype)
        xp.concatenate(parts, out=out)
        return out


class FlatDict(dict):
    """{name: view into ``flat``}; ``d[name] = value`` copies value into the view."""

    def __init__(self, layout: Layout, flat):
        super().__init__(layout.views(flat))
        self.layout, self.flat = layout, flat

    @classmethod
    def from_arrays(cls, arrays: dict, dtype=None) -> "FlatDict":
        """A new buffer holding copies of ``arrays`` (shapes and order as given)."""
        layout = Layout.of({k: tuple(v.shape) for k, v in arrays.items()})
        first = next(iter(arrays.values()))
        xp = array_module(first)
        flat = xp.empty(layout.size, dtype=dtype or first.dtype)
        return cls(layout, layout.pack({k: v.astype(flat.dtype, copy=False)
                                        for k, v in arrays.items()}, out=flat))

    def __setitem__(self, name, value):
        if name not in self:
            raise KeyError(f"{name!r} is not one of these {len(self)} tensors")
        view = dict.__getitem__(self, name)
        if tuple(value.shape) != tuple(view.shape):
            raise ValueError(f"{name}: shape {tuple(value.shape)} does not fit "
                             f"{tuple(view.shape)}")
        if value is view:
            return
        xp = array_module(view)
        if array_module(value) is not xp:          # host <-> device
            value = to_numpy(value) if xp is host_xp() else xp.asarray(value)
        view[...] = value

    def update(self, other=(), **kw):
        for k, v in dict(other, **kw).items():
            self[k] = v

    def _fixed(self, *args, **kw):
        raise TypeError("the tensors of a flat buffer cannot be added or removed")

    __delitem__ = pop = popitem = clear = setdefault = _fixed


__all__ = ["FlatDict", "Layout"]
