"""Serving subcommands: ``laser serve`` (HTTP + gRPC + socket, or Ray Serve) and ``laser perf``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from laser.cli.common import (
    add_backend,
    add_batch_size,
    add_http_port,
    add_input_shape,
    add_json,
    add_threads,
    add_weight_args,
    alias,
)
from laser.cli.output import emit_json, table
from laser.errors import ConfigError


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers like 1,8,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{what} must be positive integers, got {text!r}")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve models: Open Inference Protocol over HTTP and gRPC, laser's socket "
                                     "protocol, dynamic batching, Prometheus /metrics")
    p.add_argument("models", nargs="+", metavar="MODEL_OR_REPOSITORY",
                   help="bundle dir, repository <repo>/<model>/<version>/, catalog name, .onnx, or NAME=SOURCE")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    add_weight_args(p)
    add_http_port(p, 8000, "HTTP port (0: a free one; pick free ports when 8000-8002 are taken)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (0: a free one; default: 8001)")
    p.add_argument("--socket-port", type=int, default=8002, help="socket protocol port (0: a free one; default: 8002)")
    p.add_argument("--no-http", action="store_true")
    p.add_argument("--no-grpc", action="store_true")
    p.add_argument("--no-socket", action="store_true")
    add_backend(p, help="runtime backend (echo: no model, for tests)")
    add_threads(p)
    p.add_argument("--max-batch-size", type=int, default=8, help="samples per model execution (default 8)")
    p.add_argument("--max-queue-delay-ms", type=float, default=2.0,
                   help="how long the oldest request waits for a batch to fill (default 2 ms)")
    p.add_argument("--preferred-batch-sizes", help="e.g. 4,8: send a batch at once when it reaches one")
    p.add_argument("--max-queue-size", type=int, default=128, help="requests waiting per model; beyond: 503")
    p.add_argument("--no-batching", action="store_true", help="run every request alone")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up runs before READY")
    p.add_argument("--version-policy", default="latest", help="latest | latest:N | all | specific:1,3")
    p.add_argument("--poll-interval", type=float, default=0.0,
                   help="re-scan repositories every N seconds (0: never)")
    p.add_argument("--model-control", action="store_true",
                   help="enable the repository load/unload endpoints (off by default); the server may then start "
                        "with no model loaded")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (prefer the LASER_SERVE_TOKEN env var: "
                                   "arguments are visible to other users in the process list)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body / frame (default 64 MiB)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds to drain in-flight requests on SIGTERM")
    p.add_argument("--web", action="store_true", help="also serve each model's browser page (laser web: "
                                                     "onnxruntime-web in the visitor's browser) under /web/MODEL/")
    p.add_argument("--server-name", default="laser", help="the name server metadata reports (default laser; "
                                                          "Triton's example clients check for 'triton')")
    p.add_argument("--ray", action="store_true", help="deploy on Ray Serve instead (HTTP only)")
    p.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas (with --ray)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("perf", help="load-test a loopback server: throughput and p50/p90/p99 per concurrency")
    p.add_argument("url", help="http://127.0.0.1:8000, grpc://127.0.0.1:8001 or laser://127.0.0.1:8002")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--concurrency", default="1,8,32", help="levels, e.g. 1,8,32")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per level (after warm-up)")
    p.add_argument("--warmup-seconds", type=float, default=2.0, help="discarded seconds per level (default 2)")
    alias(p, "--warmup", "warmup_seconds", type=float)
    add_batch_size(p, 1, "samples per request")
    add_input_shape(p, "per-sample sizes for dynamic dims, e.g. 3,224,224")
    add_json(p)
    p.set_defaults(func=cmd_perf)


def serve_options(args: argparse.Namespace) -> dict[str, Any]:
    from laser.serve.codec import Limits

    return dict(
        host=args.host, http_port=None if args.no_http else args.http_port,
        grpc_port=None if args.no_grpc else args.grpc_port, socket_port=None if args.no_socket else args.socket_port,
        token=args.token or os.environ.get("LASER_SERVE_TOKEN") or None, model_control=args.model_control,
        poll_interval_s=args.poll_interval, grace_s=args.grace,
        limits=Limits(max_body_bytes=int(args.max_body_mb * (1 << 20))),
        backend=args.backend, threads=args.threads, max_batch_size=args.max_batch_size,
        max_queue_delay_ms=args.max_queue_delay_ms,
        preferred_batch_sizes=_ints(args.preferred_batch_sizes, "--preferred-batch-sizes")
        if args.preferred_batch_sizes else (),
        max_queue_size=args.max_queue_size, dynamic_batching=not args.no_batching, warmup=not args.no_warmup,
        version_policy=args.version_policy, weights=args.weights, random_weights=args.random_weights,
        **({"web": True} if args.web else {}), **({"server_name": args.server_name} if args.server_name != "laser" else {}),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from laser.serve import serve

    if args.web and args.ray:
        raise ConfigError("--web pages are served by laser's own HTTP server, not Ray Serve; drop --ray or --web")
    options = serve_options(args)
    if args.host not in ("127.0.0.1", "::1", "localhost") and not options["token"]:
        import logging

        logging.getLogger("laser.serve").warning("binding %s without a token: anyone who can reach it can use it",
                                                 args.host)
    serve(*args.models, ray=args.ray, replicas=args.replicas, **options)
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from laser.serve.perf import perf

    shape = _ints(args.input_shape, "--input-shape") if args.input_shape else None
    levels = _ints(args.concurrency, "--concurrency")
    results = perf(args.url, args.model, levels, args.duration, args.warmup_seconds, args.batch_size, shape)
    if args.json:
        emit_json({"url": args.url, "model": args.model, "batch": args.batch_size,
                   "method": "measured: client-side latency per request over the measured period, after warm-up",
                   "levels": [r.to_dict() for r in results]})
        return 0
    rows = [(r.concurrency, f"{r.throughput_rps:.1f}", f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}",
             r.requests, r.errors, "yes" if r.stable else "no") for r in results]
    print(f"{args.model} at {args.url}, batch {args.batch_size}, {args.duration:g} s per level after {args.warmup_seconds:g} s "
          "warm-up (measured, client-side)")
    print(table(rows, ("concurrency", "req/s", "p50 ms", "p90 ms", "p99 ms", "requests", "errors", "stable")))
    return 0
