"""A deterministic synthetic referring world (see :mod:`uniref.data.synthetic.world`)."""
