import sys

from telegraf_llm_input.docs.generate import main

raise SystemExit(main(sys.argv[1:]))
