"""Declares loopfast's C core; everything else is in pyproject.toml.

LOOPFAST_SANITIZE=1 builds it with AddressSanitizer and UBSan (run the tests
with LD_PRELOAD of libasan, see README).
"""

import os

from setuptools import Extension, setup

flags = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
         "-Wno-missing-field-initializers"]
link: list[str] = []
if os.environ.get("LOOPFAST_SANITIZE") == "1":
    flags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    link += ["-fsanitize=address,undefined"]

setup(ext_modules=[Extension("loopfast._ring", ["src/loopfast/_ring.c"],
                             extra_compile_args=flags, extra_link_args=link)])
