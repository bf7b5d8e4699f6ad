"""How ``stylesense ui`` starts Streamlit on the app: the command line and its environment,
one way for the CLI and for the browser tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stylesense.ui.common import HOME_ENV, IMPORT_ROOTS_ENV, THREADS_ENV

APP = Path(__file__).parent / "app.py"
MAX_UPLOAD_MB = 1024  # the largest upload (a catalogue's zip of photos); photos have their own, lower cap


def command(host: str = "127.0.0.1", port: int = 8501) -> list[str]:
    """``python -m streamlit run`` on the app: headless, no usage statistics, no tracebacks
    in the page (they go to the server's log), no file watcher (a server, not a notebook)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--server.fileWatcherType", "none", "--server.maxUploadSize", str(MAX_UPLOAD_MB),
        "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "none",
        "--client.toolbarMode", "viewer", "--global.developmentMode", "false",
    ]


def environment(home: Path, import_roots: Sequence[Path] = (), threads: int | None = None) -> dict[str, str]:
    """This process's environment plus what the app reads: the home, the folders the
    catalogue page may import from, the CPU threads for the CNN and the models."""
    env = dict(os.environ)
    env[HOME_ENV] = str(home)
    env[IMPORT_ROOTS_ENV] = os.pathsep.join(str(Path(r).resolve()) for r in import_roots)
    if threads:
        env[THREADS_ENV] = str(threads)
    return env
