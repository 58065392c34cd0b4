"""Memory cost of the outputs: RSS after importing each module in a fresh interpreter.

Baseline: the stdout (Telegraf) path, measured in the same run. Prints MiB and the ratio.
Run: python3 bench/output_memory.py
"""

import subprocess
import sys

CASES = {
    "stdout path (baseline)": "import telegraf_llm_input.agent, telegraf_llm_input.sinks",
    "our prometheus output": "import telegraf_llm_input.agent, telegraf_llm_input.sinks.prometheus",
    "prometheus_client": "import telegraf_llm_input.agent, telegraf_llm_input.sinks, prometheus_client",
    "influxdb_v1 (httpx)": "import telegraf_llm_input.agent, telegraf_llm_input.sinks.influx, httpx",
    "influxdb_v2 (influxdb-client)": "import telegraf_llm_input.agent, telegraf_llm_input.sinks.influx_v2",
}
PROBE = "{code}\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def rss_mib(code: str) -> float:
    runs = [
        int(
            subprocess.run(
                [sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(3)
    ]
    return min(runs) / 1024.0


if __name__ == "__main__":
    base = None
    for name, code in CASES.items():
        mib = rss_mib(code)
        base = base or mib
        print(f"{name:32s} {mib:7.1f} MiB  x{mib / base:.2f}")
