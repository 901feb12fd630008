"""``archbench dashboard``: serve the Streamlit app over a results store (read-only)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from harness.errors import OlderSchema, StoreNotReady, UserError
from harness.report import err, out
from harness.store import Store, resolve_url


def serve_dashboard(db: str | None, *, port: int = 8501, host: str = "localhost", open_browser: bool = False) -> int:
    """Run ``streamlit run dashboard/app.py`` on the store at ``db`` until it stops; its exit status."""
    if importlib.util.find_spec("streamlit") is None:
        raise UserError("the dashboard needs Streamlit: pip install 'archbench[dashboard]'")
    url = resolve_url(db)
    try:
        Store(url, readonly=True).close()
    except (StoreNotReady, OlderSchema) as e:
        # a missing, empty or older store still gets the page, which says how to fill or upgrade
        # it (and shows the runs once they arrive); any other failure stops here with its fix
        err.print(f"[yellow]note[/]: {e}", highlight=False, soft_wrap=True)
    app_path = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
           "--server.address", host, "--server.headless", str(not open_browser).lower(),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal", "--", "--db", url]
    out.print(f"archbench dashboard on http://{host}:{port} (reading {url}); Ctrl-C to stop")
    return subprocess.call(cmd, env={**os.environ, "ARCHBENCH_DB": url})
