#!/usr/bin/env python3
"""Build the HTML report of a run and screenshot its landing page, one table and one figure
in headless Chromium (logic: gibench.report_screens).  Example, in a finished run's directory:

    python scripts/report_screenshots.py --directory . -o report_screenshots
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
from gibench.report_screens import main  # noqa: E402

raise SystemExit(main())
