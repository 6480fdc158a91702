"""scorehouse: score scikit-learn models inside the warehouse (DuckDB, Spark, dbt)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scorehouse")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
