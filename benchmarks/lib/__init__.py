"""Helpers the benchmarks and the default model's build share, kept out of the ``pipeline`` package.

Import with the ``benchmarks`` folder on ``sys.path`` (as every benchmark script puts it):
``from lib.campaign import dock_in_rounds``, ``from lib.dude import sample_library``.
"""
