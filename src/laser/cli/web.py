"""``laser web``: an artifact as a self-contained web page (onnxruntime-web), optionally served."""

from __future__ import annotations

import argparse
from pathlib import Path

from laser.cli.common import add_model_args, load_model
from laser.cli.output import emit_json
from laser.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="write a static web page that runs the model in the browser (onnxruntime-web, "
                                   "no server round trip); --serve serves it on 127.0.0.1")
    add_model_args(p)
    next(a for a in p._actions if a.dest == "model").nargs = "?"  # MODEL may be left out with --fetch-runtime
    p.add_argument("-o", "--out", help="folder to write the site into (default out/web/<model name>)")
    p.add_argument("--backend", default="auto", choices=("auto", "wasm", "webgpu"),
                   help="execution provider in the page: auto = WebGPU when the browser has it, else WASM")
    p.add_argument("--check", action="store_true", help="load the page once in headless Chromium and fail if "
                                                        "onnxruntime-web cannot build a session for the model")
    p.add_argument("--serve", action="store_true", help="then serve the folder on 127.0.0.1 with the COOP/COEP "
                                                        "headers that WASM threads need (Ctrl-C stops)")
    p.add_argument("--port", type=int, default=8080, help="port for --serve (default 8080; 0: a free one)")
    p.add_argument("--fetch-runtime", action="store_true",
                   help="install the pinned onnxruntime-web npm package (npm), then exit unless MODEL is given")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    from laser.web import VERSION, as_onnx, check_in_browser, fetch_runtime, write_site

    if args.fetch_runtime:
        dist = fetch_runtime()
        if not args.model:
            print(f"onnxruntime-web {VERSION} in {dist}")
            return 0
    if not args.model:
        raise ConfigError("give the model to put on a page, e.g. `laser web digits-cnn -o out/web`")
    art = as_onnx(load_model(args))
    out = Path(args.out or Path("out") / "web" / art.name)
    site = write_site(art, out, backend=args.backend)
    info = check_in_browser(site) if args.check else None
    result = {"site": str(site), "model": art.name, "runtime": f"onnxruntime-web {VERSION}",
              "files": sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()),
              "bytes": sum(p.stat().st_size for p in site.rglob("*") if p.is_file())}
    if info is not None:
        result["check"] = {"backend": info.get("backend"), "threads": info.get("threads")}
    if args.json:
        emit_json(result)
    else:
        print(f"wrote {site}/ ({len(result['files'])} files, {result['bytes'] / (1 << 20):.1f} MiB, "
              f"onnxruntime-web {VERSION})")
        if info is not None:
            print(f"checked in headless Chromium: session built on {info.get('backend')}")
    if args.serve:
        serve_site(site, args.port)
    return 0


def serve_site(site: Path, port: int) -> None:
    from laser.web.server import make_server

    server = make_server(site, port)
    print(f"serving {site}/ at http://127.0.0.1:{server.server_address[1]}/ (COOP/COEP set; Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
