"""`python -m oauth1_etrade` for the installed package (the wheel installs oauth1_etrade.py as
oauth1_etrade/__init__.py, beside py.typed; see pyproject.toml)."""

import sys

from oauth1_etrade import main

sys.exit(main())
