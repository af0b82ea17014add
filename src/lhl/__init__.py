"""lhl: lifelong heterogeneous learning for dense prediction."""
__version__ = "0.1.0"
