import sys

from consumer.app import main

sys.exit(main())
