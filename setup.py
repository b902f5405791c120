# The native core is a cffi extension: setuptools builds it during `pip install` (see
# build_native.py). Everything else is declared in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["build_native.py:ffibuilder"])
