import sys

from .faces.client import main

sys.exit(main())
