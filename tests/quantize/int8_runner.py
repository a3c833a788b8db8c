"""Run int8 parts on this CPU, or under qemu-user's emulated Haswell (AVX2, no VNNI), and print
each one's outputs as float64 digests with its cosine to the fp32 graph's. ONNX graphs need no
torch (a few seconds under emulation); ExecuTorch programs (.pte) load executorch, which imports
torch (about 30 s under emulation).

    python int8_runner.py FOLDER TAG   (FOLDER: inputs.npz, fp32.onnx and the parts to compare;
                                        each part's outputs are saved as FOLDER/TAG/<part>.npy)
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main(folder: Path, tag: str) -> None:
    data = np.load(folder / "inputs.npz")
    calls = [{"pixel_values": data[k]} for k in sorted(data.files)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1

    def run(path: Path) -> np.ndarray:
        if path.suffix == ".pte":
            import torch
            from executorch.runtime import Runtime

            method = Runtime.get().load_program(str(path)).load_method("forward")
            outputs = [method.execute([torch.from_numpy(c["pixel_values"])])[0].numpy() for c in calls]
        else:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            outputs = [session.run(None, c)[0] for c in calls]
        return np.concatenate([o.ravel() for o in outputs]).astype(np.float64)

    reference = run(folder / "fp32.onnx")
    (folder / tag).mkdir(exist_ok=True)
    out = {}
    for graph in sorted([*folder.glob("*.onnx"), *folder.glob("*.pte")]):
        values = run(graph)
        np.save(folder / tag / f"{graph.stem}.npy", values)
        cosine = float(values @ reference / (np.linalg.norm(values) * np.linalg.norm(reference)))
        out[graph.stem] = {"cosine": cosine, "sha256": hashlib.sha256(values.tobytes()).hexdigest()}
    print(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
