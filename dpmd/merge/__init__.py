"""dpmd-merge: build one FITS data product from a Data Product Specification.

A program of its own (``python -m dpmd.merge``): no Twisted and no knowledge
of the server, so an operator can run it by hand and the server runs it as a
child process. See docs/merge.md.
"""
