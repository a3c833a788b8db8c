"""The verification report of a bundle (manifest `verification`, or `mmedge verify`'s), as the
CLI prints it: one line per part with its numbers against the floor, then the end-to-end tokens."""
from __future__ import annotations

from .manifest import TENSOR_ROLES


def llm_floor(numbers: dict) -> str:
    """The LLM's floor as text: a top-1 share (quantized), or a logit difference (exact types)."""
    floor = numbers["floor"]
    if "min_top1" in floor:
        return f"top-1 >= {floor['min_top1']}"
    return f"max|diff| <= {floor['max_abs_diff']:.3g} ({floor['relative_to_largest_logit']:g} of the largest logit)"


def llm_shortfall(numbers: dict) -> str:
    """Why the LLM missed its floor, in one phrase."""
    if "min_top1" in numbers["floor"]:
        return f"top-1 {numbers['top1_agreement']:.3f} < {numbers['floor']['min_top1']}"
    return f"max|diff| {numbers['all_positions_max_abs_diff']:.3g} > {numbers['floor']['max_abs_diff']:.3g}"


def print_verification(report: dict) -> None:
    if not report or report.get("skipped"):
        print("verification: skipped")
        return
    print(f"preprocess      max|diff| {report['preprocess']['max_abs_diff']:.3g} over {report['preprocess']['images']} inputs")
    tensor_roles = [r for r in TENSOR_ROLES if r in report]
    for part in tensor_roles:
        r = report[part]
        print(f"{part:<15} {r['precision']:<11} cosine {r['cosine']:.6f}  max|diff| {r['max_abs_diff']:.3g}  "
              f"floor {r['floor']['min_cosine']}  {'ok' if r['passed'] else 'BELOW FLOOR'}")
    r = report["llm"]
    print(f"{'llm':<15} {r['precision']:<11} top-1 {r['top1_agreement']:.3f} over {r['positions']} positions  "
          f"max|diff| {r.get('all_positions_max_abs_diff', r['last_logit_max_abs_diff']):.3g}  "
          f"floor {llm_floor(r)}  {'ok' if r['passed'] else 'BELOW FLOOR'}")
    for role, alts in report.get("alternatives", {}).items():
        for r in alts:
            print(f"{role:<15} {r['precision']:<11} cosine {r['cosine']:.6f}  max|diff| {r['max_abs_diff']:.3g}  "
                  f"floor {r['floor']['min_cosine']}  {'ok' if r['passed'] else 'BELOW FLOOR'}  ({r['target']} variant)")
    for part in tensor_roles:
        if report[part].get("runtime_parity"):
            print(f"{'':<15} {part}: {report[part]['method']}; runtime parity {report[part]['runtime_parity']}")
    if report.get("end_to_end_unverified"):
        print(f"end to end      not run here: {report['end_to_end_unverified']}")
        return
    for case in report["end_to_end"]:
        tie = case.get("first_difference") or {}
        after = (f", then a near tie (the reference's margin {tie['reference_gap']:.3g} <= {tie['tie_width']:.3g})"
                 if tie.get("near_tie") else "")
        print(f"end to end      {case['case']}: {case['greedy_tokens_equal']}/{case['greedy_tokens_total']} greedy tokens equal"
              f"{after} (prompt tokens {'equal' if case['prompt_tokens_equal'] else 'DIFFER'})")
    print(f"tokens identical: {report['greedy_tokens_equal']}/{report['greedy_tokens_total']}")
    if report.get("machine"):
        m = report["machine"]
        print(f"verified on     {m['model']} ({m['architecture']}; int8 dot {m['int8_dot']}; {' '.join(m['simd'])}; "
              f"torch kernels {m.get('torch_cpu_capability', '?')})")
    if report.get("providers"):
        print("ran on          " + ", ".join(f"{role} {p}" for role, p in report["providers"].items()))
    for note in report.get("placement_notes", []):
        print(f"warning         {note}")
