"""Watch a local LLM model server and the GPU under it; emit InfluxDB line protocol."""

__version__ = "0.1.0"
