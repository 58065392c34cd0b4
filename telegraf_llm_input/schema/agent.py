from telegraf_llm_input.schema.base import Field, Measurement

AGENT = Measurement(
    "llm_agent",
    "The agent itself: one point per gather (totals), one per source (tag `source`), and one per database "
    "output (tag `output`, its `output_*` fields).",
    ("host", "source", "output"),
    (
        Field("gather_ms", "ms", "Wall time of the gather (sources, processors), without the tag `source`."),
        Field("gathers", "count", "Gathers since start.", "counter", type="int"),
        Field("sources", "count", "Sources: the configured ones, and one per server discovery found.", type="int"),
        Field(
            "source_errors",
            "count",
            "Source failures (errors and deadline misses) since start, all sources.",
            "counter",
            type="int",
        ),
        Field("lines_written", "count", "Line-protocol lines written to stdout since start.", "counter", type="int"),
        Field(
            "metrics_dropped",
            "count",
            "Metrics not written because no field was representable (NaN/Inf only).",
            "counter",
            type="int",
        ),
        Field(
            "stdout_dropped_gathers",
            "count",
            "Gathers not written to stdout because nobody read it (the queue of 100 gathers was full; the oldest go).",
            "counter",
            type="int",
        ),
        Field(
            "fields_dropped",
            "count",
            "Field values dropped because they do not fit the field's type (a fraction "
            "in an int field, an int past int64, a negative count): never written as another type.",
            "counter",
            type="int",
        ),
        Field(
            "output_buffered_points",
            "count",
            "Points waiting for a database output (queued or in its outage buffer), all outputs.",
            type="int",
        ),
        Field(
            "output_dropped_points",
            "count",
            "Points a database output gave up on: rejected by the server (4xx) or pushed out of a full buffer.",
            "counter",
            type="int",
        ),
        Field(
            "output_written_points", "count", "Points database outputs have written since start.", "counter", type="int"
        ),
        Field(
            "output_errors", "count", "Failed database writes since start (each retry counts).", "counter", type="int"
        ),
        Field("duration_ms", "ms", "With tag `source`: time the source took this gather."),
        Field("errors", "count", "With tag `source`: failures of this source since start.", "counter", type="int"),
        Field("metrics", "count", "With tag `source`: metrics it produced this gather.", type="int"),
        Field("ok", "0/1", "With tag `source`: 1 when this gather succeeded.", type="int"),
        Field(
            "models_dropped",
            "count",
            "With tag `source` (a server target): models or series beyond its `max_models`, not reported, since start.",
            "counter",
            type="int",
        ),
    ),
)
