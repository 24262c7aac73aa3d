"""The public names of the real CuPy, read from names_cupy14.txt (see extract_names.py)."""

import os

_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "names_cupy14.txt")


def _load():
    sections, header, current = {}, [], None
    with open(_FILE) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                header.append(line)
            elif line.startswith("["):
                current = sections.setdefault(line[1:-1], set())
            else:
                current.add(line)
    version = header[0].split("CuPy ")[1].split(",")[0] if header else "14"
    return {k: frozenset(v) for k, v in sections.items()}, version


NAMES, VERSION = _load()
