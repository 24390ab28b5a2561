"""Bundled templates and sample data, shipped in the wheel as ``bulkmail.templates``.

Not code: a package only so that setuptools and ``importlib.resources`` carry and find the
folders beside this file (``bulkmail.resources.templates_dir``).
"""
