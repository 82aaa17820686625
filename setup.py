"""Declares loopfast's C core; everything else is in pyproject.toml.

The C core is optional: where it cannot be built (no compiler, no Python
headers, an interpreter it does not support) the install goes on without it,
and the ring transport falls back to the stream transport (_core/ringcore.py).
LOOPFAST_REQUIRE_C=1 makes a failed build fail the install (CI).

LOOPFAST_SANITIZE=1 builds it with AddressSanitizer and UBSan (run the tests
with LD_PRELOAD of libasan, see README); it implies LOOPFAST_REQUIRE_C=1.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

SANITIZE = os.environ.get("LOOPFAST_SANITIZE") == "1"
REQUIRE_C = SANITIZE or os.environ.get("LOOPFAST_REQUIRE_C") == "1"
# setuptools.errors' classes are distutils' (CompileError and LinkError are CCompilerErrors).
BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)

flags = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
         "-Wno-missing-field-initializers"]
link: list[str] = []
if SANITIZE:
    flags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    link += ["-fsanitize=address,undefined"]


class optional_build_ext(build_ext):
    """build_ext that installs loopfast without its C core when it cannot be built."""

    def run(self):
        try:
            super().run()
        except BUILD_ERRORS as exc:  # e.g. no compiler known for this platform
            if REQUIRE_C:
                raise
            _skipped(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            if REQUIRE_C:
                raise
            _skipped(exc)


def _skipped(exc):
    print(f"\nWARNING: loopfast's C core (loopfast._ring) was not built: {exc}\n"
          "  loopfast works without it; the ring transport falls back to the stream\n"
          "  transport. To get it: install a C compiler and the Python headers (e.g.\n"
          "  gcc and python3-dev), then reinstall. LOOPFAST_REQUIRE_C=1 makes this an error.\n",
          file=sys.stderr)


setup(cmdclass={"build_ext": optional_build_ext},
      ext_modules=[Extension("loopfast._ring", ["src/loopfast/_ring.c"], optional=not REQUIRE_C,
                             extra_compile_args=flags, extra_link_args=link)])
