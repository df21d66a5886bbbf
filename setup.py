# The cffi extension (syscall_watcher._libbpf) is declared here: setuptools takes
# cffi_modules only through setup(). Everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["syscall_watcher/_build.py:ffibuilder"])
