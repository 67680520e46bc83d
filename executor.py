"""``python executor.py``: the embedded engine's supervisor (``engines/embedded.py``).

``python app.py`` and ``gunicorn.conf.py`` start it for you.
"""
from __future__ import annotations

import sys

from engines.embedded import main

if __name__ == "__main__":
    sys.exit(main())
