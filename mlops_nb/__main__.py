import sys

from mlops_nb.cli.main import main

sys.exit(main())
