"""The store: the only modules that import duckdb."""

from workbench.store.queries import DEFAULT_DB, Store
from workbench.store.writer import RunWriter

__all__ = ["DEFAULT_DB", "RunWriter", "Store"]
