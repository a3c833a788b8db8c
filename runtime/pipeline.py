"""The torch-free pipeline: images -> pixel values -> encoder -> projector -> llama.cpp.

`Pipeline.generate` yields `TokenEvent`s as tokens are produced (streaming) and fills a
`GenerationStats` with the time of every stage.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from mmedge.bundle import Bundle, open_bundle
from mmedge.errors import BackendError, PromptError, SamplingError

from .backends import open_tensor_part, select_part
from .devices import check_device, place_llm
from .embedding_cache import MAX_CACHE_MIB, EmbeddingCache
from .images import load_image
from .audio_clips import AudioSource
from .layouts import FEATURES_INPUT, FrameRequest, PreparedImage, video_layout
from .layouts.video import VideoSource
from .media import media_layout
from .gguf_rows import GgufTensorRows
from .llamacpp import DecodeStopped, LlamaModel, LlamaOptions, gpu_offload_available
from .prefill import prefill
from .prompt import TokenPlan, expand_media_markers, format_chat, format_prompt, plan_tokens
from .sampling import Sampler, SamplingParams


@dataclass(frozen=True)
class RuntimeOptions:
    n_ctx: int = 4096
    n_batch: int = 512
    threads: int = 0
    exact: bool = False  # flash attention off + F32 KV cache: for verification
    check_hashes: bool = True
    device: str = "cpu"  # cpu | gpu | npu | auto (runtime/devices.py)
    target: str = "auto"  # which compiled variant of the tensor parts to run, when a bundle holds several
    strict: bool = False  # an absent device is an error instead of a CPU fallback
    # MiB of projector outputs kept by the content of their encoder inputs (runtime/embedding_cache.py);
    # 0: off. A repeated image then skips the encoder and projector.
    embedding_cache_mib: int = 0

    def __post_init__(self) -> None:
        check_device(self.device)
        if not 0 <= self.embedding_cache_mib <= MAX_CACHE_MIB:
            raise SamplingError(f"embedding_cache_mib must be in 0 .. {MAX_CACHE_MIB} (0 = off), got {self.embedding_cache_mib}")
        if self.n_ctx < 16 or self.n_ctx > 1 << 20:
            raise SamplingError(f"n_ctx must be in 16 .. 2^20, got {self.n_ctx}")
        if self.n_batch < 1 or self.n_batch > 1 << 16:
            raise SamplingError(f"n_batch must be in 1 .. 65536, got {self.n_batch}")
        if self.threads < 0 or self.threads > 1024:
            raise SamplingError(f"threads must be in 0 .. 1024 (0 = every core this process may use), got {self.threads}")


@dataclass
class GenerationParams:
    max_new_tokens: int = 128
    # EOS and other end-of-generation tokens are banned before this many tokens (as HF's min_new_tokens).
    min_new_tokens: int = 0
    sampling: SamplingParams = field(default_factory=SamplingParams)

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 1 << 20:
            raise SamplingError(f"max_new_tokens must be in 1 .. 2^20, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise SamplingError(f"min_new_tokens must be in 0 .. max_new_tokens, got {self.min_new_tokens}")


@dataclass
class GenerationStats:
    load_s: float = 0.0
    preprocess_s: float = 0.0  # reading the input files, then the layouts' prepare
    plan_s: float = 0.0  # chat formatting, marker expansion, tokenizing, the context check
    encode_s: float = 0.0
    project_s: float = 0.0
    assemble_s: float = 0.0  # the rest of turning projector outputs into rows: the layouts' assemble, checks
    prefill_s: float = 0.0
    first_sample_s: float = 0.0  # sampling the first token from the prefill's logits
    # Encoder calls answered by the embedding cache (their lookups are timed in encode_s).
    embedding_cache_hits: int = 0
    # Time to first token, measured end to end: it spans the stages above from preprocess to the
    # first sample, each of which is timed on its own (`mmedge bench` checks that they add up).
    first_token_s: float = 0.0
    decode_s: float = 0.0
    # Seconds inside llama_decode during the prefill and the decode: with encode_s and project_s,
    # the time spent in the engines; the rest of first_token_s + decode_s is mmedge's own.
    llama_prefill_s: float = 0.0
    llama_decode_s: float = 0.0
    prompt_positions: int = 0
    new_tokens: int = 0
    # KV cells in use when decoding starts (the prompt) and at the end (the last token is never decoded).
    kv_cells_decode_start: int = 0
    kv_cells_end: int = 0
    providers: dict = field(default_factory=dict)
    stopped: bool = False  # `should_stop` ended the generation (during the prefill: no tokens)

    @property
    def decode_tokens_per_s(self) -> float:
        return (self.new_tokens - 1) / self.decode_s if self.decode_s > 0 and self.new_tokens > 1 else 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_positions / self.prefill_s if self.prefill_s > 0 else 0.0


@dataclass(frozen=True)
class TokenEvent:
    token: int
    text: str  # the decoded text this token completes (may be "" mid UTF-8 sequence)


@dataclass
class GenerationResult:
    tokens: list[int]
    text: str
    stats: GenerationStats
    prompt_tokens: list[int]


class Pipeline:
    """A loaded bundle, ready to answer prompts about images."""

    def __init__(self, bundle: str | Path | Bundle, options: RuntimeOptions | None = None):
        """`bundle`: a folder (opened and integrity-checked here) or a `Bundle` already opened so."""
        self.options = options or RuntimeOptions()
        t0 = time.perf_counter()
        self.bundle: Bundle = (bundle if isinstance(bundle, Bundle)
                               else open_bundle(bundle, check_hashes=self.options.check_hashes))
        m = self.bundle.manifest
        o = self.options
        # Images or audio clips: either way one input -> encoder inputs, prompt text, rows.
        self.layout = media_layout(m)
        # Videos: sampled frames through the same encoder and projector (bundles with a video section).
        self.video_layout = video_layout(m.video, self.layout) if m.video is not None else None
        roles = m.tensor_roles
        self.parts = {role: select_part(m.candidates(role), o.target) for role in roles}
        self.encoder, self.projector = (
            open_tensor_part(self.bundle.path_for(self.parts[r]), self.parts[r], o.threads, o.device, o.strict,
                             self.bundle.verified_sha256(self.parts[r]))
            for r in roles
        )
        llm_placement, gpu_layers = place_llm(o.device, o.strict, gpu_offload_available())
        self.llm = LlamaModel(
            self.bundle.path_of("llm"),
            LlamaOptions(n_ctx=o.n_ctx, n_batch=o.n_batch, n_threads=o.threads, exact=o.exact, n_gpu_layers=gpu_layers),
        )
        self.placements = {roles[0]: self.encoder.placement, roles[1]: self.projector.placement, "llm": llm_placement}
        self.part_threads = {roles[0]: self.encoder.threads, roles[1]: self.projector.threads, "llm": self.llm.n_threads}
        # What could not be placed as asked (the CLI prints these as warnings).
        self.placement_notes = [p.note for p in self.placements.values() if p.note]
        if self.llm.n_embd != m.media.embedding_dim:
            raise BackendError(
                f"the GGUF takes embeddings of width {self.llm.n_embd}, the manifest says {m.media.embedding_dim}; "
                "the bundle's parts do not belong together, re-export it"
            )
        # A prefix-LM prompt enters as embedding rows, text tokens included: read from the GGUF itself.
        self.token_rows = (GgufTensorRows(self.bundle.path_of("llm"), "token_embd.weight", self.llm.header)
                           if m.media.attention == "prefix" else None)
        self.embedding_cache = EmbeddingCache(o.embedding_cache_mib << 20) if o.embedding_cache_mib else None
        self.load_s = time.perf_counter() - t0

    @property
    def manifest(self):
        return self.bundle.manifest

    # -- stages ------------------------------------------------------------------------------
    def prepare_images(self, images: list) -> list[PreparedImage]:
        """Preprocessing: each input's encoder inputs (image tiles, audio features) and prompt text, by
        the bundle's layout (an audio bundle's inputs are WAV paths or (samples, rate) pairs)."""
        return [self.layout.prepare(img) for img in images]

    def prepare_videos(self, videos: list, request: FrameRequest = FrameRequest()) -> list[PreparedImage]:
        """Preprocessing of videos (files, frame folders, `Video`s): frames sampled by the bundle's
        rule (the HF video processor's) or `request`, then the video layout's encoder inputs."""
        if videos and self.video_layout is None:
            raise PromptError(f"this bundle ({self.manifest.family}) takes no videos; its family's HF processor has no "
                              "video path, or the bundle was exported before mmedge converted videos (re-export it)")
        return [self.video_layout.prepare(self.video_layout.load(v, request)) for v in videos]

    def layout_for(self, prepared: PreparedImage):
        """The layout that made (and assembles) this input: the video layout for videos."""
        return self.video_layout if prepared.medium == "video" else self.layout

    def tile_embeddings(self, prepared: PreparedImage, stats: GenerationStats | None = None) -> np.ndarray:
        """One input's encoder call(s) then projector call(s): the shape its layout declares
        ([tiles, tokens_per_image, n_embd], or Qwen2-VL's [rows, n_embd]); several calls (a video's
        frame groups) are concatenated on axis 0."""
        outputs = []
        for inputs in prepared.encoder_calls():
            t0 = time.perf_counter()
            key = cached = None
            if self.embedding_cache is not None:
                key = EmbeddingCache.key({**{f"encoder.{k}": v for k, v in inputs.items()},
                                          **{f"projector.{k}": v for k, v in prepared.projector_inputs.items()}})
                cached = self.embedding_cache.get(key)
            if cached is not None:
                outputs.append(cached)
                if stats is not None:
                    stats.encode_s += time.perf_counter() - t0
                    stats.embedding_cache_hits += 1
                continue
            features = self.encoder.run(inputs)
            t1 = time.perf_counter()
            # A projector that reads more than the features (InstructBLIP's Q-Former: the prompt) gets them by name.
            outputs.append(self.projector.run({FEATURES_INPUT: features, **prepared.projector_inputs}
                                              if prepared.projector_inputs else features))
            t2 = time.perf_counter()
            if key is not None:
                self.embedding_cache.put(key, outputs[-1])
            if stats is not None:
                stats.encode_s += t1 - t0
                stats.project_s += t2 - t1
        embeddings = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
        expected = self.layout_for(prepared).projected_shape(prepared)
        if embeddings.shape != expected:
            raise BackendError(f"the projector returned shape {embeddings.shape}, the manifest promises {expected}")
        return embeddings

    def image_rows(self, prepared: list[PreparedImage], stats: GenerationStats | None = None) -> np.ndarray:
        """All images' embedding rows in prompt order: [sum of n_rows, n_embd]."""
        rows = []
        for p in prepared:
            assembled = self.layout_for(p).assemble(p, self.tile_embeddings(p, stats))
            if assembled.shape != (p.n_rows, self.manifest.media.embedding_dim):
                raise BackendError(f"the image layout assembled {assembled.shape} rows, the prompt holds {p.n_rows}")
            rows.append(assembled)
        return np.concatenate(rows) if rows else np.zeros((0, self.manifest.media.embedding_dim), np.float32)

    def format(self, prompt: str, n_images: int, raw: bool = False, n_videos: int = 0) -> str:
        """The chat-formatted prompt for `n_images` inputs of the bundle's modality (images or audio
        clips) and `n_videos` videos."""
        m = self.manifest
        self.layout.check_prompt(prompt, n_images, raw)
        if n_videos and m.video is None:
            raise PromptError(f"this bundle ({m.family}) takes no videos, {n_videos} were given")
        videos = (m.video.marker, n_videos) if m.video is not None else None
        return format_prompt(prompt, n_images, m.prompt, m.media, raw=raw, content_type=m.modality, videos=videos)

    def format_chat(self, turns: list[tuple[str, str]]) -> str:
        """A conversation of (role, text with markers) turns through the bundle's chat template; give
        the result to `generate` with `raw_prompt=True` (which checks the markers against the inputs)."""
        return format_chat(turns, self.manifest.prompt)

    def tokenize(self, prompt_text: str) -> list[int]:
        spec = self.manifest.prompt
        if spec.prepend_space and prompt_text and not prompt_text.startswith(" "):
            first = self.llm.tokenize(prompt_text, add_special=False, parse_special=True)[:1]
            if first and not self.llm.is_special(first[0]):
                prompt_text = " " + prompt_text
        return self.llm.tokenize(prompt_text, add_special=spec.add_bos, parse_special=True)

    def plan(self, prompt_text: str, prepared: list[PreparedImage]) -> TokenPlan:
        """Expand each image's marker into its layout's text, tokenize, and locate the image rows."""
        slot = self.manifest.media
        n_rows = sum(p.n_rows for p in prepared)
        prompt_text = self.layout.bind_prompt(prompt_text, prepared)
        if self.layout.rows_before_bos:  # InstructBLIP: the image tokens, then the tokenized prompt (BOS first)
            return plan_tokens([slot.marker_token_id] * n_rows + self.tokenize(prompt_text), slot.marker_token_id, n_rows)
        kinds = [(slot.marker, slot.marker_token_id, [i for i, p in enumerate(prepared) if p.medium != "video"])]
        if self.manifest.video is not None:
            video = self.manifest.video
            kinds.append((video.marker, video.marker_token_id, [i for i, p in enumerate(prepared) if p.medium == "video"]))
        expanded, order = expand_media_markers(prompt_text, [(marker, [prepared[i].text for i in items])
                                                             for marker, _, items in kinds])
        plan = plan_tokens(self.tokenize(expanded), frozenset(token for _, token, _ in kinds), n_rows)
        # The media's rows in the order their markers stand in the text.
        return replace(plan, media_order=tuple(kinds[k][2][i] for k, i in order))

    # -- generation ------------------------------------------------------------------------------
    def generate(
        self,
        images: list[Image.Image | str | Path],
        prompt: str,
        params: GenerationParams | None = None,
        raw_prompt: bool = False,
        on_token: Callable[[TokenEvent], bool | None] | None = None,
        audio: list[AudioSource] | None = None,
        videos: list[VideoSource] | None = None,
        frames: FrameRequest = FrameRequest(),
        should_stop: Callable[[], bool] | None = None,
    ) -> GenerationResult:
        """Run the whole pipeline on images (and videos: files, frame folders or `Video`s, sampled
        by the bundle's rule or `frames`) or, for an audio bundle, `audio` clips (WAV paths or
        (samples, rate) pairs). `on_token` gets each token as it comes; returning False stops.
        `should_stop` is asked before every llama_decode call (prefill batches included): True stops
        there, and the result has `stats.stopped` set and the tokens so far (none during the prefill)."""
        params = params or GenerationParams()
        stats = GenerationStats(load_s=self.load_s)
        stats.providers = {role: p.provider for role, p in self.placements.items()}
        # Every stage is timed on its own; first_token_s spans them all from t_start.
        t_start = time.perf_counter()
        inputs = self._inputs(images, audio or [])  # image files are decoded here: preprocessing
        stats.preprocess_s = time.perf_counter() - t_start
        videos = list(videos or [])
        t0 = time.perf_counter()
        text = self.format(prompt, len(inputs), raw=raw_prompt, n_videos=len(videos))
        stats.plan_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepared = self.prepare_images(inputs) + self.prepare_videos(videos, frames)
        stats.preprocess_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        plan = self.plan(text, prepared)
        prepared = [prepared[i] for i in plan.media_order] if plan.media_order else prepared
        stats.prompt_positions = plan.n_positions
        if plan.n_positions + params.max_new_tokens > self.llm.n_ctx:
            raise PromptError(
                f"the prompt takes {plan.n_positions} positions and up to {params.max_new_tokens} new tokens are asked, "
                f"but the context holds {self.llm.n_ctx}; shorten the prompt, lower --max-tokens or raise --ctx"
            )
        stats.plan_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        embeddings = self.image_rows(prepared, stats)
        stats.assemble_s = time.perf_counter() - t0 - stats.encode_s - stats.project_s

        t0 = time.perf_counter()
        self.llm.reset(self.manifest.prompt.first_position)
        self.llm.should_stop = should_stop
        try:
            logits = self._prefill(plan, embeddings, prepared)
        except DecodeStopped:
            stats.stopped = True
            stats.prefill_s = time.perf_counter() - t0
            return GenerationResult(tokens=[], text="", stats=stats, prompt_tokens=plan.text_tokens)
        finally:
            self.llm.should_stop = None
        t_prefilled = time.perf_counter()
        stats.prefill_s = t_prefilled - t0
        stats.llama_prefill_s = self.llm.llama_s
        stats.kv_cells_decode_start = self.llm.n_past

        sampler = Sampler(params.sampling)
        out_tokens: list[int] = []
        pending = b""
        text_parts: list[str] = []
        t_decode = None
        for step in range(params.max_new_tokens):
            banned = self.llm.eog_tokens if step < params.min_new_tokens else None
            token = sampler(logits, banned)
            if step == 0:
                t_decode = time.perf_counter()
                stats.first_sample_s = t_decode - t_prefilled
                stats.first_token_s = t_decode - t_start
            if self.llm.is_eog(token):
                break
            out_tokens.append(token)
            pending += self.llm.token_bytes(token)
            piece, pending = _split_utf8(pending)
            text_parts.append(piece)
            if on_token is not None and on_token(TokenEvent(token, piece)) is False:
                break
            if step + 1 < params.max_new_tokens:
                if should_stop is not None and should_stop():
                    stats.stopped = True
                    break
                logits = self.llm.decode_tokens([token], logits_for="last")
        if t_decode is not None:
            stats.decode_s = time.perf_counter() - t_decode
        stats.llama_decode_s = self.llm.llama_s - stats.llama_prefill_s
        stats.new_tokens = len(out_tokens)
        stats.kv_cells_end = self.llm.n_past
        if pending:
            text_parts.append(_decode_replacing(pending))
        return GenerationResult(tokens=out_tokens, text="".join(text_parts), stats=stats, prompt_tokens=plan.text_tokens)

    def _inputs(self, images: list, audio: list) -> list:
        """The inputs of the bundle's modality; inputs of the other one are refused by name."""
        modality = self.manifest.modality
        other = images if modality == "audio" else audio
        if other:
            given = "images" if modality == "audio" else "audio clips"
            raise PromptError(f"this bundle ({self.manifest.family}) takes {modality} only, {len(other)} {given} were given; "
                              f"pass {'--audio' if modality == 'audio' else '--image'} inputs instead")
        if modality == "audio":
            return list(audio)
        return [img if isinstance(img, Image.Image) else load_image(img) for img in images]

    def _prefill(self, plan: TokenPlan, embeddings: np.ndarray, prepared: list[PreparedImage] | None = None) -> np.ndarray:
        """Decode the plan by the manifest's attention mode; image runs take their layout's M-RoPE
        grids when `prepared` is given (omitted: consecutive positions, as text)."""
        image = self.manifest.media
        return prefill(image.attention, self.llm, plan, embeddings, image.embedding_divisor, self.token_rows, prepared)

    def close(self) -> None:
        self.llm.close()


def _split_utf8(data: bytes) -> tuple[str, bytes]:
    """Decode the complete UTF-8 prefix of `data`; keep an incomplete tail for the next token."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            return _no_nul(data[:cut].decode("utf-8")), data[cut:]
        except UnicodeDecodeError:
            continue
    return _decode_replacing(data), b""


def _decode_replacing(data: bytes) -> str:
    return _no_nul(data.decode("utf-8", errors="replace"))


def _no_nul(text: str) -> str:
    """U+0000 as U+FFFD: the native runtime's C ABI hands text out NUL-terminated, which cannot carry
    it, and both runtimes give the same text (a random or broken model does emit byte 0)."""
    return text.replace("\x00", "\ufffd")
