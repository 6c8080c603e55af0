"""`python -m kerasllm.cli` runs the `kerasllm` command."""

import sys

from kerasllm.cli import main

sys.exit(main())
