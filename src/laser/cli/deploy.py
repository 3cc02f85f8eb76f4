"""``laser deploy cpp ARTIFACT -o DIR [--build]``: a C++ program that runs the artifact without Python."""

from __future__ import annotations

import argparse

from laser.cli.common import add_json
from laser.cli.output import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="write a native program that runs an exported model (laser deploy cpp ...)")
    targets = p.add_subparsers(dest="target", metavar="TARGET")
    c = targets.add_parser("cpp", help="a C++17 CMake project running an aoti, torchscript or onnx artifact on .npy files")
    c.add_argument("model", help="an exported bundle (aoti, torchscript or onnx), or a .onnx / TorchScript .pt file")
    c.add_argument("-o", "--output", required=True, help="directory for the project (CMakeLists.txt, main.cpp, README.md)")
    c.add_argument("--build", action="store_true", help="also run cmake and the compiler; prints where the binary is")
    add_json(c)
    c.set_defaults(func=cmd_deploy_cpp)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_deploy_cpp(args: argparse.Namespace) -> int:
    from laser.deploy import cpp_project
    from laser.loader import load

    result = cpp_project(load(args.model), args.output, build=args.build)
    if args.json:
        emit_json(result)
        return 0
    print(f"wrote {result['directory']}: CMakeLists.txt, main.cpp, README.md ({result['format']}, {result['runtime']})")
    if "binary" in result:
        print(f"built {result['binary']} in {result['build_seconds']} s; run: {result['binary']} --input x.npy "
              "--output y.npy  (--bench 100 for p50/p90)")
    else:
        print(f"build: cmake -S {result['directory']} -B {result['directory']}/build && cmake --build "
              f"{result['directory']}/build  (or rerun with --build)")
    return 0
