"""Grafana's template substitution, for running dashboard queries outside Grafana.

What Grafana does before a query reaches the datasource: `$timeFilter` (InfluxQL) becomes the time range,
`$__interval` and `$__rate_interval` a duration, and a multi-value variable inside a regex becomes `(a|b)`
with regex characters escaped (`.*`, the `allValue`, when All is selected).
"""

from __future__ import annotations

import re

_REGEX_CHARS = re.compile(r"([\\.+*?()\[\]{}|^$])")


def _regex_value(values: list[str] | None) -> str:
    if values is None:
        return ".*"  # the dashboard's allValue
    escaped = [_REGEX_CHARS.sub(r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(
    text: str,
    variables: dict[str, list[str] | str | None],
    *,
    interval: str,
    rate_interval: str = "",
    time_filter: str = "",
) -> str:
    """`variables`: a list (selected values), None (All) or a str (a textbox, used as is)."""
    out = text.replace("$timeFilter", time_filter).replace("$__rate_interval", rate_interval)
    out = out.replace("$__interval", interval)

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:  # `$tag_host` in an InfluxDB alias is no variable
            return match.group(0)
        v = variables[name]
        return v if isinstance(v, str) else _regex_value(v)

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, out)
