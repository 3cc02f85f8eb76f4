"""The doctor's checks: each reads the measured Facts and returns a Finding (cause, evidence, fix) or None.

They encode traps measured on CPUs like the ones laser targets: dynamic INT8 turns convolutions into
the slow ConvInteger; static INT8 with signed activations or float layers left between Q/DQ pairs
gains little; FP16 on ONNX Runtime's CPU provider is cast back to FP32; channel counts that are not
multiples of 8 waste SIMD lanes; INT8 without VNNI gains little; a small model is bound by per-call
overhead, not by compute; batch 1 leaves cores idle; a first call that builds the engine inflates timings; a .pte whose ops fall back to
ExecuTorch's portable kernels is slow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from laser.doctor.facts import Facts, Finding
from laser.timing import NOT_FASTER

VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")
FLOAT_COMPUTE = ("Conv", "FusedConv", "Gemm", "MatMul", "FusedGemm", "FusedMatMul")
QDQ = ("QuantizeLinear", "DequantizeLinear")


def _ms(us: float) -> str:
    return f"{us / 1e3:.3f} ms" if us >= 100 else f"{us:.1f} µs"


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


# id -> check, in the order findings are listed when their shares tie (the order they are defined in below)
CHECKS: dict[str, Callable[[Facts], Finding | None]] = {}


class Found(NamedTuple):
    """What a check returns when it fires; ``check`` adds its id to make the Finding."""

    cause: str
    evidence: str
    fix: str
    share: float = 0.0


def check(check_id: str) -> Callable[[Callable[[Facts], Found | None]], Callable[[Facts], Found | None]]:
    """Register a check under ``check_id``: the one place its id is written."""
    def register(fn: Callable[[Facts], Found | None]) -> Callable[[Facts], Found | None]:
        def run(f: Facts) -> Finding | None:
            found = fn(f)
            return None if found is None else Finding(check_id, *found)

        CHECKS[check_id] = run
        return fn

    return register


@check("accuracy-drop")
def accuracy_lost(f: Facts) -> Found | None:
    drop, allowed = f.accuracy_drop_pts, f.allowed_drop_pts
    if drop is None or allowed is None or drop <= allowed:
        return None
    method, ops = f.quantized(), f.recipe_ops
    if "prune" in ops or "search" in ops:  # pruning loses far more than quantization: look there first
        fix = ("prune less (a lower ratio), choose per-layer ratios by sensitivity (Prune(sensitivity=True)), "
               "prune in steps with fine-tuning, or distill longer from the original model")
        if "distill" not in ops and "search" not in ops and not any(s.params.get("finetune_epochs") for s in
                                                                    f.child.lineage if s.op == "prune"):
            fix = ("fine-tune or distill after pruning — it was not, for lack of a labelled dataset (give --data); "
                   "or " + fix)
        if method:
            fix += f"; then check {method} alone against its parent to see what quantization adds"
    elif method and "int8" in method:
        fix = ("keep the most sensitive layers in float (Quantize(..., max_accuracy_drop=...)), calibrate with "
               "more samples or Entropy/Percentile calibration, or fine-tune with QAT")
    elif method:
        fix = "keep overflow-prone ops (Softmax, LayerNorm, reductions) in FP32, or stay in FP32"
    else:
        fix = "compare layer by layer against the parent (laser diff PARENT CHILD) to find where it diverges"
    return Found("the child is less accurate than the budget allows",
                   f"accuracy drop {drop:.2f} pts vs {allowed:g} allowed", fix)


@check("dynamic-int8-conv")
def dynamic_int8_conv(f: Facts) -> Found | None:
    g = f.child_graph
    n = g.ops.get("ConvInteger", 0) if g else 0
    if not n or g is None:
        return None
    evidence = f"the graph has {n} ConvInteger node(s) and {g.ops.get('DynamicQuantizeLinear', 0)} DynamicQuantizeLinear"
    share = 0.0
    if f.child_profile:
        p = f.child_profile
        share = p.share("ConvInteger", "DynamicQuantizeLinear")
        evidence += (f"; profile: ConvInteger {_ms(p.by_op_us.get('ConvInteger', 0))} + DynamicQuantizeLinear "
                     f"{_ms(p.by_op_us.get('DynamicQuantizeLinear', 0))} per run = {_pct(share)} of the run")
    return Found("dynamic INT8 quantized the convolutions: ONNX Runtime runs them as ConvInteger, which has no "
                   "fast CPU kernel, and re-quantizes every activation at run time",
                   evidence,
                   "use static INT8 (Quantize(method='int8-static', calibration=...): QDQ, U8 activations, S8 "
                   "per-channel weights -> QLinearConv), or restrict dynamic quantization to MatMul/Gemm "
                   "(transformers), where it pays", share)


@check("executorch-portable-fallback")
def executorch_portable(f: Facts) -> Found | None:
    if f.child.format != "executorch":
        return None
    report = next((s.results["delegation"] for s in reversed(f.child.lineage) if "delegation" in s.results), None)
    if not report or not report.get("portable_ops"):
        return None
    ops = sorted({w["op"] for w in report.get("portable_where", [])})
    where = ", ".join(f"{w['op']} at {w['module']}" for w in report.get("portable_where", [])[:5])
    total = report["portable_ops"] + report["delegated_ops"]
    return Found(f"{report['portable_ops']} of {total} ops of the .pte fall back to ExecuTorch's portable kernels "
                 "(reference C++ loops, no SIMD, one thread) instead of XNNPACK",
                 f"delegation report: {report['delegated_ops']} ops in {report['partitions']} XNNPACK partition(s); "
                 f"portable: {', '.join(ops)} ({where})",
                 "replace those ops with ones XNNPACK lowers (see the partitioner's supported-op list), or keep "
                 "them out of the exported forward; re-export and check portable_ops is 0")


@check("fp16-on-cpu")
def fp16_on_cpu(f: Facts) -> Found | None:
    g, p = f.child_graph, f.child_profile
    if not g or g.fp16_weight_share < 0.5 or f.child_backend not in ("onnxruntime", "openvino"):
        return None
    has = "avx512_fp16" in f.cpu_flags
    evidence = f"{_pct(g.fp16_weight_share)} of the weights are float16; the graph has {g.ops.get('Cast', 0)} Cast node(s)"
    share = 0.0
    cause = (f"FP16 on the {f.child_backend} CPU path: the CPU kernels compute in FP32, so FP16 tensors are "
             "converted to FP32 and back")
    if f.child_backend == "openvino":
        cause = ("OpenVINO compiles the model for its inference precision (laser's runner asks for f32), so the "
                 "FP16 weights are converted back at load time and the computation is the FP32 one")
    if p:
        compute = [op for op in p.by_op_us if op in FLOAT_COMPUTE]
        half = [op for op in compute if "float16" in p.input_dtypes.get(op, [])]
        share = p.share("Cast")
        kinds = ", ".join(op + ": " + "/".join(p.input_dtypes.get(op, [])) for op in compute)
        evidence += (f"; profile: {len(half)} of {len(compute)} compute op types ran on float16 inputs ({kinds}); "
                     f"Cast {_ms(p.by_op_us.get('Cast', 0))} per run = {_pct(share)}")
        if compute and not half:
            cause = ("ONNX Runtime's CPU provider folded the FP16 weights back to FP32 when it loaded the model: "
                     "every convolution and matrix product ran in FP32, so FP16 saved no arithmetic (only file "
                     "size)")
        pp = f.parent_profile
        if pp:
            mine, theirs = sum(p.by_op_us.get(op, 0) for op in compute), sum(pp.by_op_us.get(op, 0) for op in compute)
            evidence += f"; {'/'.join(compute)} time per run {_ms(mine)} vs {_ms(theirs)} in the FP32 parent"
    evidence += f"; CPU flags: avx512_fp16 {'present' if has else 'absent'}"
    if has:
        cause += " (this CPU has avx512_fp16, but the runtime's CPU kernels do not use it)"
    return Found(cause, evidence,
                   "on CPU keep FP32 (FP16 only halves the file) or use int8-static; FP16 pays on GPUs "
                   "(CUDA / TensorRT execution providers)", share)


@check("reducemean-pooling")
def reducemean_pooling(f: Facts) -> Found | None:
    p = f.child_profile
    if not p or 4 not in p.input_ranks.get("ReduceMean", []):
        return None
    share = p.share("ReduceMean")
    if share < 0.05:
        return None
    return Found("global average pooling was exported as ReduceMean (the torch.export-based exporter does this), "
                   "which ONNX Runtime runs slower than GlobalAveragePool",
                   f"profile: ReduceMean on 4-D inputs {_ms(p.by_op_us['ReduceMean'])} per run = {_pct(share)} of the run",
                   "export with the TorchScript-based exporter (Export(to='onnx', exporter='legacy')) and measure "
                   "both: in one example measured elsewhere the exporter choice alone changed MobileNetV3's latency 1.85×",
                   share)


@check("signed-activations")
def signed_activations(f: Facts) -> Found | None:
    g = f.child_graph
    if not g or not g.activation_zero_point_types.get("int8"):
        return None
    n, total = g.activation_zero_point_types["int8"], sum(g.activation_zero_point_types.values())
    return Found("activations are quantized as signed INT8 (S8S8): ONNX Runtime's fast x86 INT8 kernels take "
                   "unsigned activations with signed weights (U8S8); S8S8 convolutions fall back to slower paths",
                   f"{n} of {total} QuantizeLinear node(s) have an int8 zero point",
                   "re-quantize with activation_type QUInt8 and weight_type QInt8, per channel (laser's "
                   "int8-static default); in one example measured elsewhere that took ResNet-18 from 16.8 ms to 6.4 ms")


@check("float-left-in-quantized-graph")
def float_left_in_quantized(f: Facts) -> Found | None:
    g, p = f.child_graph, f.child_profile
    if not g or not (g.ops.get("QuantizeLinear") or g.ops.get("DequantizeLinear")) or not p:
        return None
    floats = {op: n for op, n in p.nodes_by_op.items() if op in FLOAT_COMPUTE}
    qdq_share = p.share(*QDQ)
    float_share = p.share(*floats)
    if not floats and qdq_share < 0.1:
        return None
    quant = sum(n for op, n in p.nodes_by_op.items() if op.startswith("QLinear") or op.endswith("Integer"))
    evidence = (f"profile per run: {sum(floats.values())} float compute node(s) "
                f"({', '.join(f'{op} ×{n}' for op, n in floats.items()) or 'none'}) = {_pct(float_share)} of the "
                f"run, {quant} quantized node(s), Q/DQ nodes {_ms(p.by_op_us.get('QuantizeLinear', 0) + p.by_op_us.get('DequantizeLinear', 0))}"
                f" = {_pct(qdq_share)}")
    return Found("part of the quantized graph still runs in float: Q/DQ pairs that ONNX Runtime could not fuse "
                   "into QLinear kernels convert back and forth around float operators",
                   evidence,
                   "quantize with U8 activations and per-channel S8 weights (laser's int8-static default) so "
                   "QDQ pairs fuse into QLinearConv/QLinearMatMul; layers kept in float on purpose (an accuracy "
                   "budget) are listed in the quantize step of the lineage — each one costs this conversion",
                   float_share + qdq_share)


@check("no-vnni")
def no_vnni(f: Facts) -> Found | None:
    method = f.quantized()
    if not method or "int8" not in method or not f.cpu_flags or any(x in f.cpu_flags for x in VNNI):
        return None
    return Found("this CPU has no VNNI (AVX-512 VNNI / AVX-VNNI / AMX): INT8 dot products take three "
                   "instructions instead of one, so INT8 gains little over FP32",
                   "CPU flags from /proc/cpuinfo: none of " + ", ".join(VNNI),
                   "deploy INT8 on a CPU with VNNI (Intel Cascade Lake or later, AMD Zen 4) or keep FP32 here; "
                   "pruning reduces work on any CPU")


@check("channels-not-multiple-of-8")
def odd_channels(f: Facts) -> Found | None:
    g = f.child_graph
    if not g or not g.channels:
        return None
    layers = g.channels[:-1]  # the last layer is the head: its width is the number of classes
    odd = [(n, c) for n, c in layers if c % 8]
    if not odd:
        return None
    examples = ", ".join(f"{n}: {c}" for n, c in odd[:4])
    return Found("channel counts that are not multiples of 8 leave SIMD lanes idle: vector kernels process "
                   "channels in blocks of 8-16 (FP32) or 32-64 (INT8), and the remainder runs a slow tail loop",
                   f"{len(odd)} of {len(layers)} layers have an output width not divisible by 8 ({examples})",
                   "prune with rounding: Prune(ratio=..., round_to=8) (laser's default), or pick widths that are "
                   "multiples of 8 (16 for INT8)")


@check("overhead-bound")
def overhead_bound(f: Facts) -> Found | None:
    p = f.child_profile
    less_work = bool(f.parent_macs and f.child_macs and f.child_macs < 0.8 * f.parent_macs)
    if p and p.run_us:
        kernel = p.node_us / p.run_us
        if kernel >= 0.5:
            return None
        evidence = (f"profile: kernels take {_ms(p.node_us)} of the {_ms(p.run_us)} per run ({_pct(kernel)}); "
                    f"the rest is the runtime's own work per call; measured p50 {f.child_p50:.3f} ms")
    elif f.child_p50 < 0.3 and f.parent_p50 < 0.3 and (less_work or not f.child_macs):
        evidence = f"p50 {f.child_p50:.3f} ms (child) vs {f.parent_p50:.3f} ms (parent): both calls are tiny"
    else:
        return None
    if f.parent_macs and f.child_macs:
        evidence += (f"; MACs ×{f.child_macs / f.parent_macs:.2f} but p50 ×{f.child_p50 / f.parent_p50:.2f} "
                     "(child / parent)")
    return Found("the model is so small that per-call overhead (input checks, operator dispatch, thread "
                   "wake-up, memory allocation) dominates: making the compute smaller cannot make the call faster",
                   evidence,
                   "batch requests (laser serve's dynamic batching) or run on the backend with the lowest per-call "
                   "overhead; compression pays once kernels dominate the run (larger inputs or models)",
                   1 - p.node_us / p.run_us if p and p.run_us else 0.0)


@check("batch-too-small")
def batch_too_small(f: Facts) -> Found | None:
    t = f.throughput
    if not t.get("child") or 8 not in t["child"] or 1 not in t["child"]:
        return None
    c1, c8 = t["child"][1], t["child"][8]
    p1, p8 = t["parent"].get(1), t["parent"].get(8)
    gain = c8 / c1 if c1 else 0.0
    speed8 = c8 / p8 if p8 else None
    speed1 = c1 / p1 if p1 else f.speedup
    shows_at_8 = bool(speed8 and speed8 > 1.2 * speed1 and speed8 > NOT_FASTER)
    if not shows_at_8 and gain < 3:
        return None
    evidence = f"child throughput {c8:,.0f}/s at batch 8 vs {c1:,.0f}/s at batch 1 (×{gain:.1f})"
    if speed8 is not None and p1:
        evidence += f"; vs its parent: {speed8:.2f}× at batch 8, {speed1:.2f}× at batch 1"
    return Found("batch 1 leaves this hardware underused: one sample does not give the kernels enough work "
                   "to fill the cores" + (", and the child's advantage only shows with more samples per call"
                                          if shows_at_8 else ""),
                   evidence,
                   "serve with dynamic batching (laser serve batches concurrent requests) or measure the Offline "
                   "scenario (laser bench --batch-sizes 1,8) if requests can wait a few milliseconds")


@check("first-run-build")
def first_run_build(f: Facts) -> Found | None:
    fc = f.first_call
    if not fc:
        return None
    first, warm, create = fc["first_ms"], fc["warm_ms"], fc["create_ms"]
    one_time = first > 10 * warm and first - warm > 2.0  # the first call does work the later ones do not
    inflated = one_time and f.child_p50 > 2 * warm and f.child_p50 - warm > 0.05  # ... and the timing held it
    # a first call of tens of ms (arena allocation) is normal for ONNX Runtime; an engine build is far longer
    if not inflated and not (first - warm > 50.0 and first > 20 * warm):
        return None
    evidence = (f"runner creation {create:.1f} ms, first call {first:.2f} ms, warm median {warm:.3f} ms "
                f"(first / warm = {first / max(warm, 1e-6):.0f}×)")
    if inflated:
        evidence += (f"; the measured p50 {f.child_p50:.3f} ms is {f.child_p50 / max(warm, 1e-6):.1f}× the warm "
                     "median: the timed calls still included warm-up work")
    return Found("the first runs pay a one-time cost (session or engine build, graph optimisation, JIT "
                   "profiling); a timing that includes it makes the model look slower than it is",
                   evidence,
                   "warm up before timing and before serving (more warm-up calls: TorchScript's profiling "
                   "executor optimises only after its first runs); cache compiled engines across restarts "
                   "(OpenVINO cache_dir, TensorRT engine cache)",
                   max(0.0, 1 - warm / f.child_p50) if inflated else 0.0)


@check("compiled-not-faster")
def compiled_not_faster(f: Facts) -> Found | None:
    c = f.compiled
    if not c or not f.slow:
        return None
    breaks, fallbacks, recompiles = c.get("graph_breaks", 0), c.get("fallback_kernels") or {}, c.get("recompiles", 0)
    evidence = (f"{c.get('graphs', '?')} graph(s), {breaks} graph break(s)"
                + (f" ({'; '.join(c['break_reasons'])})" if c.get("break_reasons") else "")
                + f", fallback kernels {fallbacks or 'none'}"
                + (f", {recompiles} recompile(s) for a second batch size" if "recompiles" in c else "")
                + f"; compiled p50 {f.child_p50:.3f} ms vs {f.parent_p50:.3f} ms eager")
    if breaks:
        cause = "the compiler split the model at graph breaks: each piece is compiled alone and Python runs between them"
        fix = "remove the breaks (data-dependent control flow, .item(), prints, unsupported calls) named in the evidence"
    elif fallbacks:
        cause = "ops with no Inductor lowering run as fallback (eager ATen) kernels, with a copy around each"
        fix = "replace those ops, or keep this model on eager / ONNX Runtime where they are native"
    elif recompiles:
        cause = "every new input shape recompiles the graph, and the timings held compilation"
        fix = "compile with dynamic=True (laser.run(art, backend='compiled', dynamic=True)) or export --to aoti"
    else:
        cause = ("the graph compiled whole (no breaks, no fallbacks) but the model's time is in convolution / GEMM "
                 "library calls that eager already makes: fusing the pointwise ops around them saves little")
        fix = "keep eager or ONNX Runtime for this model; compilation pays off on models with many small pointwise ops"
    return Found(cause, evidence, fix)


@check("disturbed-measurement")
def disturbed(f: Facts) -> Found | None:
    """The optimize run's figure is far above what the same child measures now, with no one-time cost to
    explain it: other processes were competing for the cores while it was timed."""
    fc, t = f.first_call, f.threads
    again = [x for x in (fc.get("warm_ms"), t.get("p50_ms")) if x]
    now = min(again, default=0.0)
    if not now or not (f.child_p50 > 3 * now and f.child_p50 - now > 0.05):
        return None
    if fc and fc["first_ms"] > 10 * fc["warm_ms"] and fc["first_ms"] - fc["warm_ms"] > 2.0:
        return None  # a one-time cost explains it: first-run-build says so
    load = f" (load average now {t['load_1m']:.1f} on {int(t['cores'])} cores)" if t.get("cores") else ""
    return Found("the timing was disturbed: measured again now, the child is many times faster, and its first "
                   "call costs no more than the others, so no warm-up explains it — other processes were "
                   "competing for the cores while it was timed",
                   f"p50 {f.child_p50:.3f} ms in the run vs {now:.3f} ms re-measured now{load}",
                   "re-run on a quiet machine (laser optimize --fresh), or give the runtime fewer threads than "
                   "cores (--threads 1) when the machine is shared", max(0.0, 1 - now / f.child_p50))


@check("threads-oversubscribed")
def oversubscribed(f: Facts) -> Found | None:
    t = f.threads
    one, many = t.get("p50_1_thread_ms"), t.get("p50_ms")
    if not one or not many or one > 0.5 * many:
        return None
    n = int(t["threads"])
    return Found(f"the runner's {n} intra-op threads wait for each other: other processes hold some of the "
                   "cores, and every parallel operator stalls until its slowest thread is scheduled again",
                   f"p50 {many:.3f} ms with {n} threads vs {one:.3f} ms with 1 thread, timed back to back; load "
                   f"average {t['load_1m']:.1f} on {int(t['cores'])} cores",
                   "give the runtime only the cores that are free (laser.run(..., threads=1), "
                   "SessionOptions.intra_op_num_threads, torch.set_num_threads), pin processes to cores (taskset), "
                   "or measure and serve on a machine that is not shared",
                   max(0.0, 1 - one / many))

CONTENTION = ("disturbed-measurement", "threads-oversubscribed")
TIMING_BASED = ("batch-too-small", "overhead-bound", "first-run-build")  # read from timings the doctor took


def run_checks(f: Facts) -> list[Finding]:
    """Findings for ``f``: the speed checks only when the child is not faster than its parent."""
    checks = CHECKS if f.slow else {"accuracy-drop": CHECKS["accuracy-drop"]}
    found = [fd for check in checks.values() if (fd := check(f)) is not None]
    if not found and f.slow:
        noise = 0.9 <= f.speedup <= 1.1
        found.append(Finding(
            "unexplained",
            "within this machine's measurement noise (±5-15 %)" if noise else
            "no known trap detected",
            f"child p50 {f.child_p50:.3f} ms vs parent {f.parent_p50:.3f} ms ({f.speedup:.2f}×)"
            + (f"; top ops per run: {', '.join(f'{op} {_ms(us)}' for op, us in f.child_profile.top(4))}"
               if f.child_profile else ""),
            "re-measure with more repeats (laser bench --repeats 5); if it persists, compare the per-op profiles "
            "of parent and child"))
    if any(fd.check in CONTENTION for fd in found):  # timings taken under contention explain nothing else
        found = [fd for fd in found if fd.check not in TIMING_BASED]
    order = list(CHECKS)
    return sorted(found, key=lambda fd: (-fd.share, order.index(fd.check) if fd.check in order else 99))
