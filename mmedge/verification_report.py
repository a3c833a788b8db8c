"""The verification report of a bundle (manifest `verification`, or `mmedge verify`'s), as the
CLI prints it: one line per part with its numbers against the floor, then the end-to-end tokens."""
from __future__ import annotations

from .manifest import TENSOR_ROLES


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
          f"last-logit max|diff| {r['last_logit_max_abs_diff']:.3g}  floor {r['floor']['min_top1']}  "
          f"{'ok' if r['passed'] else 'BELOW FLOOR'}")
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
        print(f"end to end      {case['case']}: {case['greedy_tokens_equal']}/{case['greedy_tokens_total']} greedy tokens equal "
              f"(prompt tokens {'equal' if case['prompt_tokens_equal'] else 'DIFFER'})")
    print(f"tokens identical: {report['greedy_tokens_equal']}/{report['greedy_tokens_total']}")
    if report.get("providers"):
        print("ran on          " + ", ".join(f"{role} {p}" for role, p in report["providers"].items()))
    for note in report.get("placement_notes", []):
        print(f"warning         {note}")
