"""Files on disk: atomic writes, JSON, raw tensor files (``files``) and the layout of a
training run directory (``rundir``).  Depends on the backend and nothing that trains."""
