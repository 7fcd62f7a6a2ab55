"""``tabpipe stream``: score a Redis Stream with the production model through a consumer group (docs/streaming.md).

Exit codes: 0 stopped by SIGTERM/SIGINT after finishing and acknowledging the current batch (or, with
``--until-idle``, nothing left to score; ``--status`` printed); 1 Redis, the history store or the registry
failed (nothing unwritten is acknowledged: a restarted consumer scores it); 2 configuration.
"""
from __future__ import annotations

from pathlib import Path

import typer

from tabpipe.cli.common import ConfigOpt, cli_errors, err, open_registry_of, out, print_json
from tabpipe.errors import ConfigError


@cli_errors
def stream(
    config: Path = ConfigOpt,
    model_version: str | None = typer.Option(None, "--model-version", help="Registry version (default: production)."),
    consumer: str | None = typer.Option(None, "--consumer", help="This consumer's name in the group (default: "
                                        "HOST-PID; a restart under the same name first rescores its own pending messages)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, max=100_000,
                                          help="Messages per read (default: stream.batch_size)."),
    block_ms: int | None = typer.Option(None, "--block-ms", min=1, max=60_000,
                                        help="Longest wait for new messages (default: stream.block_ms)."),
    claim_idle_ms: int | None = typer.Option(None, "--claim-idle-ms", min=1, help="Claim messages pending this long "
                                             "on another consumer (default: stream.claim_idle_ms)."),
    until_idle: bool = typer.Option(False, "--until-idle", help="Exit 0 once nothing is new or pending."),
    status: bool = typer.Option(False, "--status", help="Print the group's lag, pending count and stream lengths "
                                "as JSON and exit (consumes nothing)."),
) -> None:
    """Consume the input stream of the `stream:` section with a consumer group: score micro-batches, write the
    results to the output stream and the prediction log, dead-letter what cannot be scored, acknowledge after
    both writes. SIGTERM finishes the current batch and exits 0. The Redis URL comes from the environment
    variable named by stream.redis_url_env (default TABPIPE_REDIS_URL)."""
    import os
    import signal
    import socket
    from contextlib import ExitStack

    import redis

    from tabpipe.config import load_settings
    from tabpipe.history.open import open_history, row_format
    from tabpipe.scoring.redis_stream import StreamConsumer, StreamError, Streams, redacted_url, status_line

    settings = load_settings(config, check_candidates=False)
    section = settings.pipeline.stream
    url = os.environ.get(section.redis_url_env)
    if not url:
        raise ConfigError(settings.config_path, "stream.redis_url_env",
                          f"the environment variable {section.redis_url_env} is not set (the Redis URL, "
                          "e.g. redis://localhost:6379/0)")
    streams = Streams(input=section.input, output=section.output, dead_letter=section.dead_letter,
                      group=section.group, consumer=consumer or f"{socket.gethostname()}-{os.getpid()}",
                      batch_size=batch_size or section.batch_size, block_ms=block_ms or section.block_ms,
                      claim_idle_ms=claim_idle_ms or section.claim_idle_ms, max_deliveries=section.max_deliveries)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=streams.block_ms / 1000 + 30)
    except ValueError as exc:
        raise ConfigError(settings.config_path, "stream.redis_url_env",
                          f"{section.redis_url_env} is not a Redis URL ({redacted_url(url)}): {exc}") from None
    with ExitStack() as stack:
        stack.callback(client.close)
        probe = StreamConsumer(client, streams, None, "", None, None, url=url)
        probe.ping()                      # before loading the model: a wrong URL fails at once
        if status:
            print_json(probe.status())
            return
        model, meta = open_registry_of(config).load_model(model_version)
        store = fmt = None
        if settings.pipeline.monitoring.sample_rate > 0:
            store = stack.enter_context(open_history(settings, os.environ))
            fmt = row_format(settings, os.environ)
        else:
            err.print("[yellow]warning:[/] monitoring.log_predictions is off: scored rows are not logged", highlight=False)
        consumer_ = StreamConsumer(client, streams, model.use_all_cores(), meta["version"], store, fmt, url=url)
        stop = {"signal": None}

        def _stop(signum, _frame):
            stop["signal"] = signum

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stop)
        out.print(f"model {meta['version']}: consuming {streams.input} as {streams.consumer} of group "
                  f"{streams.group} on {redacted_url(url)} -> {streams.output} (dead letters: {streams.dead_letter})",
                  highlight=False)
        try:
            consumer_.run(lambda: stop["signal"] is not None, until_idle=until_idle,
                          on_status=lambda s: err.print(status_line(s), highlight=False),
                          status_interval_s=section.status_interval_s)
        except StreamError:
            c = consumer_.counters
            err.print(f"stopped after {c.messages} messages acknowledged ({c.rows_scored} rows scored); the "
                      "current batch is not acknowledged and will be scored again", highlight=False)
            raise
        out.print(status_line(consumer_.status()), highlight=False)
