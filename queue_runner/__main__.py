import sys

from queue_runner.cli import main

sys.exit(main())
