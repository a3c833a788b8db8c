"""mmedge: multimodal LLMs from a Hugging Face checkpoint to edge devices.

This package holds the bundle contract, the errors and the CLI; it imports nothing heavy.
`mmedge.export` (torch), `mmedge.quantize` and `mmedge.runtime` (torch-free) are separate.
"""
__version__ = "0.1.0"
