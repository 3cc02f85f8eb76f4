"""Why the same artifact is much slower on one runtime than on another: evidence, not assumptions.

When one ONNX artifact runs, say, 4× slower on ONNX Runtime than on OpenVINO, the cause is in what each
runtime dispatched: which operators ran (fused integer kernels, or Q/DQ pairs around float ones), which
kernels were chosen for them (OpenVINO names its kernels: ``brgconv_avx512_amx_I8``, ``jit_avx2_I8``,
``ref_any``...), how much time went to layout conversions, and what the CPU offers (VNNI, AMX, and whether
Linux granted this process the AMX tile state at all). ``explain`` profiles the artifact on both runtimes
(ONNX Runtime's built-in profiler, OpenVINO's PERF_COUNT) and turns the figures into one Finding.
"""

from __future__ import annotations

from typing import Any

from laser.artifact import Artifact
from laser.doctor.facts import Finding, Profile
from laser.doctor.probes import amx_permitted, openvino_profile, ort_profile
from laser.runtime.hardware import cpu_flags

GAP_CHECK = "backend-gap"
GAP = 1.5  # a runtime this many times slower than another on the same artifact gets explained
INT8_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "QLinearAdd")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
LAYOUT_OPS = ("Transpose", "ReorderInput", "ReorderOutput", "Reorder", "Reshape")
ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def _shares(by: dict[str, float], total: float, n: int = 4) -> str:
    top = sorted(by.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in top) if total else "—"


def explain(art: Artifact, slow: str, fast: str, slow_p50: float, fast_p50: float, *,
            ort: Profile | None = None, ov: dict[str, Any] | None = None, flags: set[str] | None = None,
            amx: bool | None = None, threads: int | None = None) -> Finding:
    """One Finding for an artifact ``slow_p50 / fast_p50`` times slower on ``slow`` than on ``fast`` (the two
    ONNX runtimes); profiles are taken here unless given (tests pass their own)."""
    pair = {slow, fast}
    if pair != {"onnxruntime", "openvino"}:
        raise ValueError(f"the backend-gap check compares onnxruntime and openvino, got {sorted(pair)}")
    ort = ort or ort_profile(art, threads=threads)
    ov = ov or openvino_profile(art, threads=threads)
    flags = cpu_flags() if flags is None else flags
    if amx is None and "amx_tile" in flags:
        amx = amx_permitted()
    ratio = slow_p50 / fast_p50
    notes = []
    qdq, int8 = ort.share(*QDQ_OPS), ort.share(*INT8_OPS)
    has_qdq = any(ort.by_op_us.get(o) for o in QDQ_OPS) or any(o in QDQ_OPS for o in ort.nodes_by_op)
    kernels = ov.get("kernels", {})
    ov_int8 = sum(n for k, n in kernels.items() if "I8" in k or "i8" in k.lower())
    ov_amx = sum(n for k, n in kernels.items() if "amx" in k.lower())
    if slow == "onnxruntime" and has_qdq and int8 < 0.2:
        notes.append(f"ONNX Runtime spent only {100 * int8:.0f} % in fused integer kernels ({', '.join(INT8_OPS[:4])}) "
                     f"and {100 * qdq:.0f} % in QuantizeLinear/DequantizeLinear: it left the Q/DQ pairs around float "
                     "operators instead of fusing them")
    if ov_int8:
        notes.append(f"OpenVINO ran {ov_int8} of {sum(kernels.values())} compute nodes with INT8 kernels"
                     + (f", {ov_amx} of them on AMX" if ov_amx else ""))
    layout_ort, layout_ov = ort.share(*LAYOUT_OPS), ov["by_type_us"].get("Reorder", 0.0) / (ov["run_us"] or 1)
    if max(layout_ort, layout_ov) > 0.1:
        notes.append(f"layout conversions took {100 * layout_ort:.0f} % of ONNX Runtime's and "
                     f"{100 * layout_ov:.0f} % of OpenVINO's time")
    if "amx_int8" in flags and amx is False:
        notes.append("the CPU has AMX-INT8 but Linux did not grant this process the AMX tile state, so no "
                     "runtime can use AMX kernels here")
    elif "amx_int8" in flags and slow == "onnxruntime" and not int8:
        notes.append("the CPU has AMX-INT8 (ONNX Runtime's MLAS has AMX INT8 GEMM kernels), but its integer "
                     "kernels never ran: the operator coverage above is the cause, not the ISA")
    isa = ", ".join(f for f in ISA if f in flags) or "no AVX2"
    evidence = (f"{slow} {slow_p50:.3g} ms vs {fast} {fast_p50:.3g} ms ({ratio:.1f}×, measured). ONNX Runtime per-op "
                f"time: {_shares(ort.by_op_us, ort.run_us)}. OpenVINO per-node time: "
                f"{_shares(ov['by_type_us'], ov['run_us'])}; kernels: "
                f"{', '.join(f'{k} ×{n}' for k, n in sorted(kernels.items(), key=lambda kv: -kv[1])[:3]) or '—'}. "
                f"CPU: {isa}" + (f"; AMX tile state granted: {amx}" if amx is not None else "") + ".")
    cause = (f"the same artifact is {ratio:.1f}× slower on {slow} than on {fast}"
             + (": " + "; ".join(notes) if notes else " (the profiles below show where the time goes)"))
    fix = (f"ship it on {fast} (laser serve/run --backend {fast})" if fast == "openvino" else
           f"ship it on {fast}") + ("; for ONNX Runtime, quantize with U8 activations and per-channel S8 weights "
                                    "(laser's int8-static) so its QDQ fusion applies" if slow == "onnxruntime" and
                                    has_qdq else "")
    return Finding(GAP_CHECK, cause, evidence, fix, share=1.0 - 1.0 / ratio)
