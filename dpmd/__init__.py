"""dpmd: the Data Product Manager of a telescope's data-acquisition system.

dpmd accepts Data Product Specifications over line-delimited JSON-RPC 2.0,
collects the source FITS files, merges them into one data product with the
``dpmd-merge`` program and releases the product to its receivers.
"""

__version__ = "0.1.0"
