import sys

from nst_engine.cli import main

sys.exit(main())
