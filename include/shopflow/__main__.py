import sys

from shopflow.cli import main

sys.exit(main())
