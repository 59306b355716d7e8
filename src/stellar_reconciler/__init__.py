"""stellar-reconciler: keeps an application's database in exact agreement with Stellar."""

__version__ = "0.1.0"
