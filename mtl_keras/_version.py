"""The package version, in a module of its own.

Nothing needs to import the package root for it: `setup.cfg` reads it
(`version = attr: mtl_keras._version.__version__`) and the exporter writes it
into each export's metadata.
"""

__version__ = "0.1.0"
