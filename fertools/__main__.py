import sys

from fertools.cli import main

sys.exit(main())
