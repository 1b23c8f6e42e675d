import sys

from polyjepa.cli import main

sys.exit(main())
