"""`python -m dynconv_bench.cli`."""

from .main import main

raise SystemExit(main())
