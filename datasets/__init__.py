"""TFDS dataset builders of tfseg: ``ph2``, ``mads`` (build with ``tfds build datasets/<name> --manual_dir DIR``)."""
