"""The program (`python -m telegraf_llm_input`, the `telegraf-llm-input` script): asyncio without ssl until TLS is
used (tlsgate), then the command line."""

from telegraf_llm_input import tlsgate

tlsgate.import_asyncio()

from telegraf_llm_input.cli import main  # noqa: E402  # after the gate: cli imports asyncio

if __name__ == "__main__":
    raise SystemExit(main())
