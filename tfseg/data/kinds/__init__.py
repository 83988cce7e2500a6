"""One module per SOURCE kind; each declares its :class:`~tfseg.data.sources.Source` subclass
and registers it with :func:`~tfseg.data.sources.register_source`.

:func:`tfseg.data.sources.source_kinds` imports every module of this package, so a new kind
is one new file here (worked example: docs/ARCHITECTURE.md). A kind module imports
TensorFlow only inside the methods that read data, so listing the kinds stays cheap.
"""
