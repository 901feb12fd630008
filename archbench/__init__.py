"""The shared base every room may import: the one registry mechanism (:mod:`archbench.registry`)
and the one formatter for validation errors (:mod:`archbench.validation`).

It imports nothing but the standard library and pydantic, so ``kernels``, ``tasks`` and
``models`` can use it without importing each other or ``harness``.
"""
