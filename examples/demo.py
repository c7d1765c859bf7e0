"""The embedded default job (`make demo`). Until the puzzle demo lands it runs examples/generate.py."""

from __future__ import annotations

import runpy
import sys

if __name__ == "__main__":
    sys.argv = [sys.argv[0]] + sys.argv[1:]
    runpy.run_path(__file__.replace("demo.py", "generate.py"), run_name="__main__")
