"""The agent as a user runs it: this checkout `pip install`ed (README) into a fresh venv, not the editable dev venv.

Why: an editable install's import finder runs at every start-up and loads pathlib, ipaddress, tempfile, shutil,
bz2, lzma and importlib.resources, which the installed agent does not (~0.2-0.5 MiB of RSS): a memory figure from
the dev venv would be one no user sees. Built once per bench run (a minute at most, from the configured package
index); when that cannot be done, the dev interpreter is used and the bench says so.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def installed_python(say=print) -> Iterator[str]:
    """The python of a temporary venv holding `pip install .` of this checkout (or, failing that, this one)."""
    with tempfile.TemporaryDirectory(prefix="bench-installed-") as tmp:
        venv = Path(tmp) / "venv"
        python = venv / "bin" / "python"
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
                check=True,
                capture_output=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            say(
                f"bench: cannot pip install this checkout into a fresh venv ({type(exc).__name__}): the dev venv is measured"
            )
            yield sys.executable
            return
        say("bench: the agent measured is this checkout as installed (pip install . into a fresh venv)")
        yield str(python)
