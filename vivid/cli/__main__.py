import sys

from vivid.cli import main

sys.exit(main())
