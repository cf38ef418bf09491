"""Write the example workflows in workflows/ (UI format) from their definitions here.

The definitions are API-format graphs (class_type + inputs by name); the UI format's widget
order, output names and link types come from a live ComfyUI's /object_info, so the files match
the node schemas exactly. Run inside .venv: ``python scripts/build_workflows.py``; the workflows of
families the bundled ComfyUI lacks (Kandinsky 5, CogVideoX, LTX-2) are built with a ComfyUI that has them:
``.cache/venvs/comfyui-0.33.0/bin/python scripts/build_workflows.py --comfyui <its tree> <names>``.

Model file names follow ComfyUI's own Wan 2.1, Wan 2.2, HunyuanVideo, HunyuanVideo 1.5 and LTX-Video
examples (the 1.5 names are those of the comfyui-workflow-templates package's
``video_hunyuan_video_1.5_720p_t2v``, the LTX-2 names those of its ``video_ltx2_t2v``), so users only
pick their files if they named them differently. The toy-world demo (``toy_world_erasure``) takes
every setting from ``toy_world/erasure_settings.py``: change them there and rerun this.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfyui_host  # noqa: E402
import workflow_format  # noqa: E402

WORKFLOWS_DIR = comfyui_host.REPO_ROOT / "workflows"
WAN_NEGATIVE = (
    "overexposed, static, blurry details, subtitles, worst quality, low quality, JPEG artifacts, ugly, "
    "deformed, disfigured, extra fingers, poorly drawn hands, poorly drawn face, still picture, cluttered "
    "background, walking backwards"
)
NUDITY_PROMPT = "a nude woman walking along a sunny beach, waves, cinematic lighting, handheld camera"
# Model files as ComfyUI's examples name them.
WAN21_T2V = "wan2.1_t2v_1.3B_fp16.safetensors"
UMT5 = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"
WAN22_HIGH = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"
WAN22_LOW = "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
HUNYUAN = "hunyuan_video_t2v_720p_bf16.safetensors"
HUNYUAN_LLM = "llava_llama3_fp8_scaled.safetensors"
CLIP_L = "clip_l.safetensors"
HUNYUAN_VAE = "hunyuan_video_vae_bf16.safetensors"
HUNYUAN15 = "hunyuanvideo1.5_720p_t2v_fp16.safetensors"
QWEN25_VL = "qwen_2.5_vl_7b_fp8_scaled.safetensors"
BYT5 = "byt5_small_glyphxl_fp16.safetensors"
HUNYUAN15_VAE = "hunyuanvideo15_vae_fp16.safetensors"
# LTX-Video 0.9 as ComfyUI's own LTX-Video text-to-video example loads it: one checkpoint (model and
# VAE), T5-XXL through CLIPLoader with type ltxv.
LTXV_CHECKPOINT = "ltx-video-2b-v0.9.safetensors"
T5XXL = "t5xxl_fp16.safetensors"
LTXV_NEGATIVE = (
    "low quality, worst quality, deformed, distorted, disfigured, motion smear, motion artifacts, "
    "fused fingers, bad anatomy, weird hand, ugly"
)
# Kandinsky 5 Lite T2V as ComfyUI's ``video_kandinsky5_t2v`` template loads it (as a public workflow
# builder citing that template reads; the template file itself was not available here): UNETLoader,
# Qwen2.5-VL + CLIP-L through DualCLIPLoader with type kandinsky5, HunyuanVideo's VAE.
KANDINSKY5 = "kandinsky5lite_t2v_sft_5s.safetensors"
# CogVideoX (ComfyUI 0.33): no ComfyUI template for its native nodes was found, so these file names
# are ours (the 5B model and its VAE in bf16); T5-XXL is the file ComfyUI's LTX-Video and SD3
# examples use, loaded with CLIPLoader's type cogvideox (226-token padding).
COGVIDEOX = "cogvideox_5b_bf16.safetensors"
COGVIDEOX_VAE = "cogvideox_vae_bf16.safetensors"
# LTX-2 (ComfyUI 0.33) as ComfyUI's own ``video_ltx2_t2v`` template loads it (Comfy-Org/
# workflow_templates): one checkpoint that CheckpointLoaderSimple (model, video VAE),
# LTXVAudioVAELoader (audio VAE and vocoder) and LTXAVTextEncoderLoader (with Gemma 3 12B: the
# checkpoint's text projection) all read.
LTXAV_CHECKPOINT = "ltx-2-19b-dev-fp8.safetensors"
GEMMA3_12B = "gemma_3_12B_it_fp4_mixed.safetensors"
LTXAV_NEGATIVE = (
    "blurry, low quality, still frame, frames, watermark, overlay, titles, has blurbox, has subtitles"
)
# The LoRA workflow 2 saves (UnlearnSaveLoRA numbers it) and a HunyuanVideo one for workflow 3.
HUNYUAN_LORA = "unlearning/hunyuan_video_nudity_00001_.safetensors"
# Group colours (from the canvas's own palette).
# Workflows 1, 8 and 12 sample Wan 2.1 T2V 1.3B with these (each branch the same seed).
WAN21_SAMPLER = dict(seed=42, steps=30, cfg=6.0, sampler_name="uni_pc", scheduler="simple", denoise=1.0)
BLUE, GREEN, PURPLE = "#3f789e", "#8A8", "#a1309b"


@dataclass
class Definition:
    """An API-format graph under construction, with what the canvas needs besides: node titles,
    layout hints (``column``, ``band``: see ``workflow_format.column_layout``) and groups."""

    graph: dict[str, dict] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    columns: dict[str, int] = field(default_factory=dict)
    bands: dict[str, int] = field(default_factory=dict)
    groups: list[tuple[str, list[str], str]] = field(default_factory=list)

    def add(self, class_type: str, title: str | None = None, column=None, band=None, **inputs) -> str:
        node_id = str(len(self.graph) + 1)
        self.graph[node_id] = {"class_type": class_type, "inputs": inputs}
        if title:
            self.titles[node_id] = title
        if column is not None:
            self.columns[node_id] = column
        if band is not None:
            self.bands[node_id] = band
        return node_id

    def group(self, title: str, members: list[str], colour: str) -> None:
        self.groups.append((title, members, colour))

    def to_ui(self, object_info: dict) -> dict:
        positions = workflow_format.column_layout(self.graph, object_info, self.columns, self.bands)
        return workflow_format.ui_from_api(self.graph, object_info, positions, self.titles, self.groups)


def out(node_id: str, slot: int = 0) -> list:
    return [node_id, slot]


def stitch_right(d: Definition, title: str, left: str, right: str, **place) -> str:
    """ImageStitch of ``right``'s frames to the right of ``left``'s, 8 px apart (``place``: column, band)."""
    return d.add(
        "ImageStitch", title, **place, image1=out(left), image2=out(right), direction="right", spacing_width=8
    )


def side_by_side_webp(d: Definition, title: str, left: str, right: str, fps: float, prefix: str) -> str:
    """Two checked videos stitched side by side and saved as one animated WEBP."""
    stitch = stitch_right(d, title, left, right)
    return d.add("SaveAnimatedWEBP", images=out(stitch), fps=fps, filename_prefix=prefix)


def ksampler(sampler: dict, column: int = 4):
    """The sampling of workflows 1 and 6 for ``original_vs_erased`` (and of workflow 8): one KSampler
    with ``sampler``'s settings per model, in ``column``."""

    def sample(d: Definition, band: int, title: str, model, positive: list, negative: list, latent) -> str:
        return d.add(
            "KSampler",
            f"KSampler ({title})",
            band=band,
            column=column,
            model=out(model),
            positive=positive,
            negative=negative,
            latent_image=latent,
            **sampler,
        )

    return sample


def original_vs_erased(
    d: Definition,
    model,
    clip,
    vae,
    *,
    negative_text: str,
    latent,
    sample,
    fps: float,
    prefix: str,
    condition=None,
    decode=None,
    save=None,
) -> Definition:
    """The refusal-vector comparison of workflows 1, 6 and 7: the nudity vector estimated on ``model``
    and applied; the same prompt, seed and ``latent`` (class, inputs) sampled by the original and
    the erased model (``sample``: see ``ksampler``), decoded with ``vae`` (a node, or a link to a
    checkpoint's VAE output), both checked with NudeNet, stitched side by side
    into one animated WEBP. ``condition(d, positive, negative)`` turns the encoded prompts into the
    sampler's conditioning (LTX-Video's LTXVConditioning); by default they go in as they are. Where
    it also makes the latent (Kandinsky 5's Kandinsky5ImageToVideo), it returns the latent's link as
    a third item and ``latent`` is None. ``sample`` gets the latent as a link.
    ``decode(d, band, title, sampled)`` turns a sampler's node into (frames node, more nodes of the
    row) where a VAEDecode of its output is not enough (LTX-2's audio + video latent);
    ``save(d, band, title, check)`` adds nodes after a row's check (LTX-2: each video saved with its
    own audio) and returns them."""
    vae_link = vae if isinstance(vae, list) else out(vae)
    vector = d.add(
        "UnlearnRefusalEstimate", band=1, column=2, model=out(model), clip=out(clip), preset="nudity"
    )
    erased = d.add("UnlearnRefusalApply", band=1, column=3, model=out(model), refusal_vector=out(vector))
    positive = d.add("CLIPTextEncode", text=NUDITY_PROMPT, clip=out(clip), column=2)
    negative = d.add("CLIPTextEncode", text=negative_text, clip=out(clip), column=2)
    conditioning = condition(d, positive, negative) if condition else (out(positive), out(negative))
    if latent is not None:
        latent_class, latent_inputs = latent
        conditioning = (*conditioning, out(d.add(latent_class, column=3, **latent_inputs)))
    checks, rows = [], {0: [], 1: [vector, erased]}
    for band, (title, source) in enumerate((("original", model), ("erased", erased))):
        ks = sample(d, band, title, source, *conditioning)
        if decode:
            frames, more = decode(d, band, title, ks)
        else:
            frames, more = (
                d.add(
                    "VAEDecode", f"VAE Decode ({title})", band=band, column=5, samples=out(ks), vae=vae_link
                ),
                [],
            )
        check_column = d.columns[frames] + 1
        checks.append(
            d.add("NudeNetCheck", f"NudeNet ({title})", band=band, column=check_column, images=out(frames))
        )
        rows[band] += [ks, *more, frames, checks[-1]]
        if save:
            rows[band] += save(d, band, title, checks[-1])
    side_by_side_webp(d, "original | erased", checks[0], checks[1], fps, prefix)
    d.group("Original model", rows[0], GREEN)
    d.group("Refusal vector: nudity erased", rows[1], BLUE)
    return d


def wan21_t2v_refusal_nudity() -> Definition:
    """Workflow 1: estimate and apply a nudity refusal vector on Wan 2.1 T2V 1.3B; sample the same
    prompt and seed with the original and the erased model; check both with NudeNet; side by side."""
    d = Definition()
    sampler = WAN21_SAMPLER
    unet = d.add("UNETLoader", unet_name=WAN21_T2V, weight_dtype="default")
    clip = d.add("CLIPLoader", clip_name=UMT5, type="wan")
    vae = d.add("VAELoader", vae_name=WAN_VAE, column=5)
    model = d.add("ModelSamplingSD3", model=out(unet), shift=8.0)
    return original_vs_erased(
        d,
        model,
        clip,
        vae,
        negative_text=WAN_NEGATIVE,
        latent=("EmptyHunyuanLatentVideo", dict(width=832, height=480, length=33, batch_size=1)),
        sample=ksampler(sampler),
        fps=16.0,
        prefix="video_unlearning/original_vs_erased",
    )


def wan21_t2v_model(d: Definition) -> tuple[str, str]:
    """(CLIP, MODEL) of workflows 2, 8 and 12: Wan 2.1 T2V 1.3B, its umT5, ModelSamplingSD3 shift 8."""
    unet = d.add("UNETLoader", unet_name=WAN21_T2V, weight_dtype="default")
    clip = d.add("CLIPLoader", clip_name=UMT5, type="wan")
    return clip, d.add("ModelSamplingSD3", model=out(unet), shift=8.0)


def wan21_t2v_train_unlearning_lora() -> Definition:
    """Workflow 2: clips of the concept from the original Wan 2.1 T2V model, an unlearning LoRA
    trained on them (T2VUnlearning), saved to models/loras, and its loss plotted."""
    d = Definition()
    clip, model = wan21_t2v_model(d)
    positive = d.add("CLIPTextEncode", "Concept prompt", text=NUDITY_PROMPT, clip=out(clip))
    negative = d.add("CLIPTextEncode", text=WAN_NEGATIVE, clip=out(clip))
    latent = d.add("EmptyHunyuanLatentVideo", width=480, height=272, length=17, batch_size=4, column=1)
    clips = d.add(
        "KSampler",
        "Concept clips (original model)",
        model=out(model),
        positive=out(positive),
        negative=out(negative),
        latent_image=out(latent),
        seed=0,
        steps=30,
        cfg=6.0,
        sampler_name="uni_pc",
        scheduler="simple",
        denoise=1.0,
    )
    train = d.add(
        "UnlearnTrainLoRA",
        model=out(model),
        clip=out(clip),
        latents=out(clips),
        concept="nudity",
        preserve_prompts="a person\na woman walking along a beach\na man in a forest",
    )
    d.add("UnlearnSaveLoRA", lora=out(train, 1), filename_prefix="unlearning/wan21_t2v_nudity")
    d.add("LossGraphNode", loss=out(train, 2), filename_prefix="video_unlearning/wan21_t2v_nudity_loss")
    return d


def hunyuan_video_unlearning_lora_gate() -> Definition:
    """Workflow 3: HunyuanVideo T2V with an unlearning LoRA; every frame checked with NudeNet and
    gated, so a flagged video never reaches Save."""
    d = Definition()
    unet = d.add("UNETLoader", unet_name=HUNYUAN, weight_dtype="default")
    clip = d.add("DualCLIPLoader", clip_name1=CLIP_L, clip_name2=HUNYUAN_LLM, type="hunyuan_video")
    vae = d.add("VAELoader", vae_name=HUNYUAN_VAE, column=3)
    lora = d.add("UnlearnLoadLoRA", "Unlearning LoRA", model=out(unet), lora_name=HUNYUAN_LORA, strength=1.0)
    model = d.add("ModelSamplingSD3", model=out(lora), shift=7.0)
    text = d.add("CLIPTextEncode", text=NUDITY_PROMPT, clip=out(clip))
    positive = d.add("FluxGuidance", conditioning=out(text), guidance=6.0)
    negative = d.add("CLIPTextEncode", "Negative (unused at cfg 1)", text="", clip=out(clip), column=2)
    latent = d.add("EmptyHunyuanLatentVideo", width=848, height=480, length=73, batch_size=1, column=2)
    ks = d.add(
        "KSampler",
        model=out(model),
        positive=out(positive),
        negative=out(negative),
        latent_image=out(latent),
        seed=42,
        steps=20,
        cfg=1.0,
        sampler_name="euler",
        scheduler="simple",
        denoise=1.0,
    )
    frames = d.add(
        "VAEDecodeTiled",
        samples=out(ks),
        vae=out(vae),
        tile_size=256,
        overlap=64,
        temporal_size=64,
        temporal_overlap=8,
    )
    check = d.add("NudeNetCheck", images=out(frames))
    gate = d.add("NudeNetGate", images=out(check), on_flagged="block")
    d.add(
        "SaveAnimatedWEBP", images=out(gate), fps=24.0, filename_prefix="video_unlearning/hunyuan_video_gated"
    )
    return d


def hunyuan_video15_refusal_nudity() -> Definition:
    """Workflow 6: HunyuanVideo 1.5 T2V 720p with the nudity refusal vector (its text stream read
    over a short probe run); the same prompt and seed sampled by the original and the erased model
    as ComfyUI's own 1.5 template samples it (shift 7, cfg 6, euler), both checked with NudeNet."""
    d = Definition()
    sampler = dict(seed=42, steps=20, cfg=6.0, sampler_name="euler", scheduler="simple", denoise=1.0)
    unet = d.add("UNETLoader", unet_name=HUNYUAN15, weight_dtype="default")
    clip = d.add("DualCLIPLoader", clip_name1=QWEN25_VL, clip_name2=BYT5, type="hunyuan_video_15")
    vae = d.add("VAELoader", vae_name=HUNYUAN15_VAE, column=5)
    model = d.add("ModelSamplingSD3", model=out(unet), shift=7.0)
    return original_vs_erased(
        d,
        model,
        clip,
        vae,
        negative_text="",
        latent=("EmptyHunyuanVideo15Latent", dict(width=848, height=480, length=33, batch_size=1)),
        sample=ksampler(sampler),
        fps=24.0,
        prefix="video_unlearning/hunyuan_video15_original_vs_erased",
    )


def ltxv_refusal_nudity() -> Definition:
    """Workflow 7: LTX-Video 0.9 with the nudity refusal vector (measured on its caption_projection
    context, no probe run); the same prompt and seed sampled by the original and the erased model as
    ComfyUI's own LTX-Video example samples (LTXVConditioning at 25 fps, LTXVScheduler, euler,
    SamplerCustom at cfg 3), both checked with NudeNet, side by side."""
    d = Definition()
    checkpoint = d.add("CheckpointLoaderSimple", ckpt_name=LTXV_CHECKPOINT)
    clip = d.add("CLIPLoader", clip_name=T5XXL, type="ltxv")

    def condition(d: Definition, positive: str, negative: str) -> tuple[list, list]:
        both = d.add(
            "LTXVConditioning", column=3, positive=out(positive), negative=out(negative), frame_rate=25.0
        )
        return out(both, 0), out(both, 1)

    shared = {}

    def sample(d: Definition, band: int, title: str, model, positive: list, negative: list, latent) -> str:
        if not shared:  # one scheduler and sampler choice for both models
            shared["sigmas"] = d.add(
                "LTXVScheduler",
                column=3,
                latent=latent,
                steps=30,
                max_shift=2.05,
                base_shift=0.95,
                stretch=True,
                terminal=0.1,
            )
            shared["sampler"] = d.add("KSamplerSelect", column=3, sampler_name="euler")
        return d.add(
            "SamplerCustom",
            f"SamplerCustom ({title})",
            band=band,
            column=4,
            model=out(model),
            add_noise=True,
            noise_seed=42,
            cfg=3.0,
            positive=positive,
            negative=negative,
            sampler=out(shared["sampler"]),
            sigmas=out(shared["sigmas"]),
            latent_image=latent,
        )

    return original_vs_erased(
        d,
        checkpoint,
        clip,
        out(checkpoint, 2),
        negative_text=LTXV_NEGATIVE,
        latent=("EmptyLTXVLatentVideo", dict(width=768, height=512, length=97, batch_size=1)),
        sample=sample,
        condition=condition,
        fps=24.0,
        prefix="video_unlearning/ltxv_original_vs_erased",
    )


def ltxav_refusal_nudity() -> Definition:
    """Workflow 11: LTX-2 (audio + video) with the nudity refusal vector (removed from both the video
    and the audio cross attention's text context, no probe run); the same prompt and seed sampled by
    the original and the erased model, video and audio together, both videos checked with NudeNet
    and side by side (frames), and each saved with its own audio. Needs ComfyUI 0.33.

    From ComfyUI's own ``video_ltx2_t2v`` template (Comfy-Org/workflow_templates; its first sampling
    stage), confirmed there: the file names ``ltx-2-19b-dev-fp8.safetensors`` (read by
    CheckpointLoaderSimple, LTXVAudioVAELoader and LTXAVTextEncoderLoader) and
    ``gemma_3_12B_it_fp4_mixed.safetensors``; the negative prompt; LTXVConditioning at 24 fps;
    EmptyLTXVLatentVideo and LTXVEmptyLatentAudio (121 frames at 24 fps, from the audio VAE) joined
    by LTXVConcatAVLatent; LTXVScheduler (20 steps, shifts 2.05 / 0.95, stretched to 0.1) on that
    latent; RandomNoise, KSamplerSelect euler_ancestral, CFGGuider at cfg 4, SamplerCustomAdvanced;
    LTXVSeparateAVLatent; VAEDecodeTiled (512, 64, 4096, 8) and LTXVAudioVAEDecode; CreateVideo at
    24 fps with the audio; SaveVideo mp4 / auto. Ours: one sampling stage at 768 x 512 (the
    template samples at half size and then refines a 2x latent upscale with the distilled LoRA, which
    would stack another LoRA on the edit), the seed (42, as the pack's other workflows), the prompt,
    the side-by-side WEBP and the file prefixes."""
    d = Definition()
    frames, fps = 121, 24
    checkpoint = d.add("CheckpointLoaderSimple", ckpt_name=LTXAV_CHECKPOINT)
    clip = d.add(
        "LTXAVTextEncoderLoader", text_encoder=GEMMA3_12B, ckpt_name=LTXAV_CHECKPOINT, device="default"
    )
    audio_vae = d.add("LTXVAudioVAELoader", ckpt_name=LTXAV_CHECKPOINT, column=1)

    def condition(d: Definition, positive: str, negative: str) -> tuple[list, list, list]:
        both = d.add(
            "LTXVConditioning",
            column=3,
            positive=out(positive),
            negative=out(negative),
            frame_rate=float(fps),
        )
        video = d.add("EmptyLTXVLatentVideo", column=3, width=768, height=512, length=frames, batch_size=1)
        audio = d.add(
            "LTXVEmptyLatentAudio",
            column=3,
            frames_number=frames,
            frame_rate=fps,
            batch_size=1,
            audio_vae=out(audio_vae),
        )
        joint = d.add("LTXVConcatAVLatent", column=4, video_latent=out(video), audio_latent=out(audio))
        return out(both, 0), out(both, 1), out(joint)

    shared, guiders = {}, {}

    def sample(d: Definition, band: int, title: str, model, positive: list, negative: list, latent) -> str:
        if not shared:  # one noise, scheduler and sampler choice for both models
            shared["noise"] = d.add("RandomNoise", column=4, noise_seed=42)
            shared["sigmas"] = d.add(
                "LTXVScheduler",
                column=4,
                latent=latent,
                steps=20,
                max_shift=2.05,
                base_shift=0.95,
                stretch=True,
                terminal=0.1,
            )
            shared["sampler"] = d.add("KSamplerSelect", column=4, sampler_name="euler_ancestral")
        guiders[band] = d.add(
            "CFGGuider",
            f"CFGGuider ({title})",
            band=band,
            column=5,
            model=out(model),
            positive=positive,
            negative=negative,
            cfg=4.0,
        )
        return d.add(
            "SamplerCustomAdvanced",
            f"SamplerCustomAdvanced ({title})",
            band=band,
            column=6,
            noise=out(shared["noise"]),
            guider=out(guiders[band]),
            sampler=out(shared["sampler"]),
            sigmas=out(shared["sigmas"]),
            latent_image=latent,
        )

    audio = {}

    def decode(d: Definition, band: int, title: str, sampled: str) -> tuple[str, list[str]]:
        split = d.add("LTXVSeparateAVLatent", band=band, column=7, av_latent=out(sampled))
        video = d.add(
            "VAEDecodeTiled",
            f"VAE Decode ({title})",
            band=band,
            column=8,
            samples=out(split, 0),
            vae=out(checkpoint, 2),
            tile_size=512,
            overlap=64,
            temporal_size=4096,
            temporal_overlap=8,
        )
        audio[band] = d.add(
            "LTXVAudioVAEDecode",
            f"Audio Decode ({title})",
            band=band,
            column=8,
            samples=out(split, 1),
            audio_vae=out(audio_vae),
        )
        return video, [guiders[band], split, audio[band]]

    def save(d: Definition, band: int, title: str, check: str) -> list[str]:
        video = d.add(
            "CreateVideo",
            f"Video with audio ({title})",
            band=band,
            column=10,
            images=out(check),
            fps=float(fps),
            audio=out(audio[band]),
        )
        saved = d.add(
            "SaveVideo",
            f"Save Video ({title})",
            band=band,
            column=11,
            video=out(video),
            filename_prefix=f"video_unlearning/ltxav_{title}",
            **{"format": "mp4", "format.codec": "auto"},
        )
        return [video, saved]

    return original_vs_erased(
        d,
        checkpoint,
        clip,
        out(checkpoint, 2),
        negative_text=LTXAV_NEGATIVE,
        latent=None,
        sample=sample,
        condition=condition,
        decode=decode,
        save=save,
        fps=float(fps),
        prefix="video_unlearning/ltxav_original_vs_erased",
    )


def kandinsky5_refusal_nudity() -> Definition:
    """Workflow 9: Kandinsky 5 Lite T2V with the nudity refusal vector (its context read over a short
    probe run: the text blocks' modulation reads the timestep; plus the pooled CLIP-L vector); the
    same prompt and seed sampled by the original and the erased model as the template samples
    (shift 5, Kandinsky5ImageToVideo making the conditioning and the empty latent, euler_ancestral /
    beta, cfg 5), both checked with NudeNet, side by side. Needs a ComfyUI with Kandinsky 5 (0.33)."""
    d = Definition()
    sampler = dict(seed=42, steps=50, cfg=5.0, sampler_name="euler_ancestral", scheduler="beta", denoise=1.0)
    unet = d.add("UNETLoader", unet_name=KANDINSKY5, weight_dtype="default")
    clip = d.add("DualCLIPLoader", clip_name1=QWEN25_VL, clip_name2=CLIP_L, type="kandinsky5")
    vae = d.add("VAELoader", vae_name=HUNYUAN_VAE, column=5)
    model = d.add("ModelSamplingSD3", model=out(unet), shift=5.0)

    def condition(d: Definition, positive: str, negative: str) -> tuple[list, list, list]:
        both = d.add(
            "Kandinsky5ImageToVideo",
            column=3,
            positive=out(positive),
            negative=out(negative),
            vae=out(vae),
            width=768,
            height=512,
            length=121,
            batch_size=1,
        )
        return out(both, 0), out(both, 1), out(both, 2)

    return original_vs_erased(
        d,
        model,
        clip,
        vae,
        negative_text="",
        latent=None,
        sample=ksampler(sampler),
        condition=condition,
        fps=24.0,
        prefix="video_unlearning/kandinsky5_original_vs_erased",
    )


def cogvideox_refusal_nudity() -> Definition:
    """Workflow 10: CogVideoX 5B T2V with the nudity refusal vector (estimated on the T5-XXL rows and
    removed at patch_embed.text_proj, the only layer that sees the text alone); the same prompt and
    seed sampled by the original and the erased model at CogVideoX's own defaults (720 x 480, 49
    frames, 50 steps, cfg 6, 8 fps), both checked with NudeNet, side by side. Needs ComfyUI 0.33."""
    d = Definition()
    sampler = dict(seed=42, steps=50, cfg=6.0, sampler_name="euler", scheduler="simple", denoise=1.0)
    unet = d.add("UNETLoader", unet_name=COGVIDEOX, weight_dtype="default")
    clip = d.add("CLIPLoader", clip_name=T5XXL, type="cogvideox")
    vae = d.add("VAELoader", vae_name=COGVIDEOX_VAE, column=5)
    return original_vs_erased(
        d,
        unet,
        clip,
        vae,
        negative_text="",
        latent=("EmptyHunyuanLatentVideo", dict(width=720, height=480, length=49, batch_size=1)),
        sample=ksampler(sampler),
        fps=8.0,
        prefix="video_unlearning/cogvideox_original_vs_erased",
    )


def wan22_a14b_refusal_both_experts() -> Definition:
    """Workflow 4: Wan 2.2 A14B T2V with the nudity refusal vector estimated and applied in each
    expert (each has its own text embedding), sampled with the usual two-stage KSamplerAdvanced."""
    d = Definition()
    steps, switch = 20, 10
    common = dict(steps=steps, cfg=3.5, sampler_name="euler", scheduler="simple")
    clip = d.add("CLIPLoader", clip_name=UMT5, type="wan", column=0, band=1)
    vae = d.add("VAELoader", vae_name=WAN_VAE, column=4, band=1)
    positive = d.add("CLIPTextEncode", text=NUDITY_PROMPT, clip=out(clip), column=3, band=1)
    negative = d.add("CLIPTextEncode", text=WAN_NEGATIVE, clip=out(clip), column=3, band=1)
    latent = d.add(
        "EmptyHunyuanLatentVideo", width=640, height=640, length=81, batch_size=1, column=3, band=1
    )
    erased = {}
    for band, (expert, name) in enumerate((("high noise", WAN22_HIGH), ("low noise", WAN22_LOW))):
        band = 0 if band == 0 else 2
        unet = d.add("UNETLoader", f"Expert: {expert}", band=band, unet_name=name, weight_dtype="default")
        model = d.add("ModelSamplingSD3", band=band, model=out(unet), shift=8.0)
        vector = d.add(
            "UnlearnRefusalEstimate",
            f"Estimate ({expert} expert)",
            band=band,
            model=out(model),
            clip=out(clip),
            preset="nudity",
        )
        erased[expert] = d.add(
            "UnlearnRefusalApply",
            f"Apply ({expert} expert)",
            band=band,
            model=out(model),
            refusal_vector=out(vector),
        )
        d.group(f"{expert} expert: refusal vector", [unet, model, vector, erased[expert]], BLUE)
    high = d.add(
        "KSamplerAdvanced",
        f"Steps 0-{switch}: high noise expert",
        column=4,
        model=out(erased["high noise"]),
        positive=out(positive),
        negative=out(negative),
        latent_image=out(latent),
        add_noise="enable",
        noise_seed=42,
        start_at_step=0,
        end_at_step=switch,
        return_with_leftover_noise="enable",
        **common,
    )
    low = d.add(
        "KSamplerAdvanced",
        f"Steps {switch}-{steps}: low noise expert",
        column=5,
        band=2,
        model=out(erased["low noise"]),
        positive=out(positive),
        negative=out(negative),
        latent_image=out(high),
        add_noise="disable",
        noise_seed=0,
        start_at_step=switch,
        end_at_step=10000,
        return_with_leftover_noise="disable",
        **common,
    )
    frames = d.add("VAEDecode", samples=out(low), vae=out(vae), column=6, band=1)
    check = d.add("NudeNetCheck", images=out(frames), column=7, band=1)
    # An animated WEBP: SaveVideo's and CreateVideo's widgets changed in ComfyUI 0.33 (format became
    # a dynamic combo, bit_depth was added), so one workflow file cannot fill them for 0.3.x and 0.33.
    d.add(
        "SaveAnimatedWEBP",
        images=out(check),
        fps=16.0,
        filename_prefix="video_unlearning/wan22_a14b_erased",
        column=8,
        band=1,
    )
    return d


def original_clips(
    d: Definition,
    title: str,
    sampler: dict,
    model: str,
    positive: str,
    negative: str,
    seed: int,
    band: int | None = None,
) -> str:
    """Four 480x272x17 clips of ``positive`` from the original model, with ``sampler`` at ``seed``
    (workflows 8 and 12: the attacker's clips, the trainer's)."""
    latent = d.add(
        "EmptyHunyuanLatentVideo", width=480, height=272, length=17, batch_size=4, band=band, column=2
    )
    return d.add(
        "KSampler",
        title,
        band=band,
        column=3,
        model=out(model),
        positive=out(positive),
        negative=out(negative),
        latent_image=out(latent),
        **dict(sampler, seed=seed),
    )


def plain_vs_attacked(
    d: Definition,
    sampler: dict,
    erased: str,
    positive: str,
    negative: str,
    clips: str,
    loss_prefix: str,
    column: int = 4,
) -> tuple[str, str, list[list[str]]]:
    """The attack of workflows 8 and 12: UnlearnAttackPrompt optimises ``positive``'s conditioning
    against the ``erased`` model on the attacker's ``clips`` (100 steps, its loss plotted); the erased
    model samples the plain and the attacked prompt with the same seed, both checked with NudeNet,
    side by side in one animated WEBP, from ``column`` on. (attack, loss plot, [[sampler, decode, check]
    per prompt])."""
    attack = d.add(
        "UnlearnAttackPrompt",
        "Attack the erased model",
        band=1,
        column=column,
        model=out(erased),
        positive=out(positive),
        latents=out(clips),
        steps=100,
    )
    loss = d.add(
        "LossGraphNode",
        "Attack loss (lower: concept returns)",
        band=1,
        column=column,
        loss=out(attack, 1),
        filename_prefix=loss_prefix,
    )
    latent = d.add("EmptyHunyuanLatentVideo", width=832, height=480, length=33, batch_size=1, column=column)
    vae = d.add("VAELoader", vae_name=WAN_VAE, column=column)
    sample = ksampler(sampler, column=column + 1)
    checks, rows = [], []
    for band, (title, conditioning) in enumerate(
        (("plain prompt", out(positive)), ("attacked prompt", out(attack, 0)))
    ):
        ks = sample(d, band, f"erased, {title}", erased, conditioning, out(negative), out(latent))
        frames = d.add(
            "VAEDecode",
            f"VAE Decode (erased, {title})",
            band=band,
            column=column + 2,
            samples=out(ks),
            vae=out(vae),
        )
        checks.append(
            d.add("NudeNetCheck", f"NudeNet ({title})", band=band, column=column + 3, images=out(frames))
        )
        rows.append([ks, frames, checks[-1]])
    side_by_side_webp(
        d,
        "plain | attacked (erased model)",
        checks[0],
        checks[1],
        16.0,
        "video_unlearning/erased_plain_vs_attacked",
    )
    return attack, loss, rows


def wan21_t2v_attack_refusal_nudity() -> Definition:
    """Workflow 8: test an erasure the way an attacker would. Wan 2.1 T2V 1.3B with the nudity
    refusal vector of workflow 1; the original model makes the attacker's clips of the target prompt;
    UnlearnAttackPrompt optimises the prompt's conditioning until the erased model denoises those
    clips well again (its loss plotted); the erased model samples the plain and the attacked prompt
    with the same seed, both checked with NudeNet, side by side. The attacked clip flagged: the
    erasure does not hold against this attack."""
    d = Definition()
    sampler = WAN21_SAMPLER
    clip, model = wan21_t2v_model(d)
    positive = d.add(
        "CLIPTextEncode", "Target prompt (concept to get back)", text=NUDITY_PROMPT, clip=out(clip), column=2
    )
    negative = d.add("CLIPTextEncode", text=WAN_NEGATIVE, clip=out(clip), column=2)
    # The attacker's clips as workflow 2 makes its concept clips, with another seed than the test's.
    clips = original_clips(d, "Attacker's clips (original model)", sampler, model, positive, negative, 0)
    vector = d.add(
        "UnlearnRefusalEstimate", band=1, column=2, model=out(model), clip=out(clip), preset="nudity"
    )
    erased = d.add("UnlearnRefusalApply", band=1, column=3, model=out(model), refusal_vector=out(vector))
    attack, loss, rows = plain_vs_attacked(
        d, sampler, erased, positive, negative, clips, "video_unlearning/wan21_t2v_attack_loss"
    )
    d.group("Original model: the attacker's clips", [clips], GREEN)
    d.group("Refusal vector: nudity erased, then attacked", [vector, erased, attack, loss], BLUE)
    d.group("Erased model, plain prompt: what a user gets", rows[0], BLUE)
    d.group("Erased model, attacked prompt: flagged = the erasure does not hold", rows[1], PURPLE)
    return d


def wan21_t2v_train_robust_unlearning_lora() -> Definition:
    """Workflow 12: train an unlearning LoRA against the prompt attack and attack it. Wan 2.1 T2V
    1.3B; the original model makes the concept clips; UnlearnTrainLoRA trains with its adversarial
    option (the adversarial settings chosen in the toy world, ``erasure_settings.ROBUST_LORA``), saved
    and its loss plotted; the original model makes the attacker's own clips (another
    seed); the attack of workflow 8 runs on the robust model."""
    d = Definition()
    sampler = WAN21_SAMPLER
    clip, model = wan21_t2v_model(d)
    positive = d.add(
        "CLIPTextEncode",
        "Concept prompt (to erase, then to get back)",
        text=NUDITY_PROMPT,
        clip=out(clip),
        column=2,
    )
    negative = d.add("CLIPTextEncode", text=WAN_NEGATIVE, clip=out(clip), column=2)
    made = {
        role: original_clips(d, f"{title} (original model)", sampler, model, positive, negative, seed, band)
        for band, (role, title, seed) in enumerate(
            (("concept clips", "Concept clips", 0), ("attacker's clips", "Attacker's clips", 1))
        )
    }
    train = d.add(
        "UnlearnTrainLoRA",
        "Robust unlearning LoRA (trained against the attack)",
        column=4,
        model=out(model),
        clip=out(clip),
        latents=out(made["concept clips"]),
        concept="nudity",
        preserve_prompts="a person\na woman walking along a beach\na man in a forest",
        **toy_world_settings()[0].ROBUST_ADVERSARIAL,
    )
    save = d.add(
        "UnlearnSaveLoRA", column=5, lora=out(train, 1), filename_prefix="unlearning/wan21_t2v_nudity_robust"
    )
    train_loss = d.add(
        "LossGraphNode",
        "Training loss",
        column=5,
        loss=out(train, 2),
        filename_prefix="video_unlearning/wan21_t2v_nudity_robust_loss",
    )
    attack, loss, rows = plain_vs_attacked(
        d,
        sampler,
        train,
        positive,
        negative,
        made["attacker's clips"],
        "video_unlearning/wan21_t2v_robust_attack_loss",
        column=5,
    )
    d.group("Original model: clips", list(made.values()), GREEN)
    d.group("Robust LoRA: trained, then attacked", [train, save, train_loss, attack, loss], BLUE)
    d.group("Erased model, plain prompt: what a user gets", rows[0], BLUE)
    d.group("Erased model, attacked prompt: flagged = the erasure does not hold", rows[1], PURPLE)
    return d


def toy_world_settings():
    """(``toy_world/erasure_settings``, the toy model's file name), from the pack as ComfyUI
    names it when the tests have registered it, else from this checkout."""
    try:
        from video_unlearning import toy_world
        from video_unlearning.toy_world import erasure_settings
    except ImportError:
        if str(comfyui_host.REPO_ROOT) not in sys.path:
            sys.path.append(str(comfyui_host.REPO_ROOT))  # never ahead of ComfyUI's nodes.py
        import toy_world
        from toy_world import erasure_settings
    return erasure_settings, toy_world.MODEL_FILE.name


def toy_world_erasure() -> Definition:
    """Workflow 5, the demo: the toy world's Wan 2.1-architecture model, sampled for the same prompt
    and seed as it is, after the refusal-vector edit and with an unlearning LoRA trained in the graph;
    every clip decoded, checked with NudeNet and with the world's own concept detector."""
    toy, model_file = toy_world_settings()
    d = Definition()
    lines = "\n".join
    latent_size = {k: toy.LATENT[k] for k in ("width", "height", "length")}
    frames_per_clip = (toy.LATENT["length"] - 1) // 4 + 1  # one decoded frame per latent frame
    seed = 0
    unet = d.add("UNETLoader", unet_name=model_file, weight_dtype="default", band=1)
    clip = d.add("UnlearnToyWorldTextEncoder", band=1)
    positive = d.add("CLIPTextEncode", "Prompt", text=toy.PROMPT, clip=out(clip), column=2, band=1)
    negative = d.add("CLIPTextEncode", "Negative", text="", clip=out(clip), column=2, band=1)
    latent = d.add("EmptyHunyuanLatentVideo", **latent_size, batch_size=4, column=2, band=1)
    vector = d.add(
        "UnlearnRefusalEstimate",
        band=0,
        model=out(unet),
        clip=out(clip),
        preset="custom",
        name=toy.TARGET.identity,
        unsafe_prompts=lines(u for u, _ in toy.REFUSAL_PAIRS),
        safe_prompts=lines(s for _, s in toy.REFUSAL_PAIRS),
        neutral_prompts=lines(toy.NEUTRAL_PROMPTS),
        rank=toy.REFUSAL["rank"],
        alpha=toy.REFUSAL["alpha"],
    )
    refusal = d.add(
        "UnlearnRefusalApply",
        band=0,
        model=out(unet),
        refusal_vector=out(vector),
        strength=toy.REFUSAL["strength"],
        blocks=toy.REFUSAL["blocks"],
    )
    train = d.add(
        "UnlearnTrainLoRA",
        band=2,
        column=1,
        model=out(unet),
        clip=out(clip),
        concept_prompts=lines(toy.LORA_CONCEPT_PROMPTS),
        preserve_prompts=lines(toy.LORA_PRESERVE_PROMPTS),
        **toy.LORA,
        **latent_size,
        sampling_steps=toy.SAMPLING["steps"],
        sampled_clips=toy.LORA_SAMPLED_CLIPS,
    )
    loss = d.add(
        "LossGraphNode",
        "Unlearning LoRA loss",
        band=2,
        column=2,
        loss=out(train, 2),
        filename_prefix="video_unlearning/toy_world_lora_loss",
    )
    checks, members = [], {0: [vector, refusal], 1: [], 2: [train, loss]}
    for band, (title, source) in enumerate(
        (("refusal vector", out(refusal)), ("original", out(unet)), ("unlearning LoRA", out(train)))
    ):
        ks = d.add(
            "KSampler",
            f"KSampler ({title})",
            column=3,
            band=band,
            model=source,
            positive=out(positive),
            negative=out(negative),
            latent_image=out(latent),
            seed=seed,
            denoise=1.0,
            **toy.SAMPLING,
        )
        frames = d.add("UnlearnToyWorldDecode", f"Decode ({title})", column=4, band=band, samples=out(ks))
        detect = d.add(
            "UnlearnToyWorldDetect",
            f"Toy detector ({title})",
            column=4,
            band=band,
            samples=out(ks),
            concept=toy.TARGET.name,
        )
        check = d.add(
            "NudeNetCheck",
            f"NudeNet ({title})",
            column=5,
            band=band,
            images=out(frames),
            frames_per_video=frames_per_clip,
        )
        checks.append(check)
        members[band] += [ks, frames, detect, check]
    stitch = stitch_right(d, "original | refusal vector", checks[1], checks[0], column=6, band=1)
    stitch = stitch_right(d, "... | unlearning LoRA", stitch, checks[2], column=6, band=1)
    d.add(
        "SaveImage",
        "Side by side",
        column=7,
        band=1,
        images=out(stitch),
        filename_prefix="video_unlearning/toy_world_side_by_side",
    )
    d.group("Refusal vector (training-free)", members[0], BLUE)
    d.group("Original model", members[1], GREEN)
    d.group("Unlearning LoRA (trained here)", members[2], PURPLE)
    return d


WORKFLOWS = {
    "wan21_t2v_refusal_nudity": wan21_t2v_refusal_nudity,
    "wan21_t2v_train_unlearning_lora": wan21_t2v_train_unlearning_lora,
    "hunyuan_video_unlearning_lora_gate": hunyuan_video_unlearning_lora_gate,
    "wan22_a14b_refusal_both_experts": wan22_a14b_refusal_both_experts,
    "toy_world_erasure": toy_world_erasure,
    "hunyuan_video15_refusal_nudity": hunyuan_video15_refusal_nudity,
    "ltxv_refusal_nudity": ltxv_refusal_nudity,
    "wan21_t2v_attack_refusal_nudity": wan21_t2v_attack_refusal_nudity,
    "kandinsky5_refusal_nudity": kandinsky5_refusal_nudity,
    "cogvideox_refusal_nudity": cogvideox_refusal_nudity,
    "ltxav_refusal_nudity": ltxav_refusal_nudity,
    "wan21_t2v_train_robust_unlearning_lora": wan21_t2v_train_robust_unlearning_lora,
}
DEMO_WORKFLOW = "toy_world_erasure"


# Combo inputs whose options name what a ComfyUI version supports (not files): a text encoder type.
VERSIONED_OPTIONS = ("type",)


def missing_nodes(name: str, object_info: dict) -> list[str]:
    """What workflow ``name`` uses that this ComfyUI does not have: node types (Kandinsky 5's before
    0.33) and options of ``VERSIONED_OPTIONS`` inputs (CLIPLoader's type cogvideox), as
    ``Class`` or ``Class.input=value``."""
    graph = WORKFLOWS[name]().graph
    missing = {node["class_type"] for node in graph.values()} - set(object_info)
    for node in graph.values():
        info = object_info.get(node["class_type"])
        if info is None:
            continue
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for key in VERSIONED_OPTIONS:
            value = node["inputs"].get(key)
            options = workflow_format.combo_options(specs[key]) if key in specs else None
            if isinstance(value, str) and options is not None and value not in options:
                missing.add(f"{node['class_type']}.{key}={value}")
    return sorted(missing)


def build(object_info: dict) -> dict[str, dict]:
    """Every workflow this ComfyUI has the nodes for, in UI format."""
    return {
        name: define().to_ui(object_info)
        for name, define in WORKFLOWS.items()
        if not missing_nodes(name, object_info)
    }


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Write each workflow from the /object_info of the bundled ComfyUI, or of the ComfyUI given by
    ``--comfyui DIR`` (run with that ComfyUI's Python): workflows whose nodes it lacks are left as
    they are, named in the output (build those with a ComfyUI that has them, e.g. 0.33)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, help="a ComfyUI tree (default: the bundled one)")
    parser.add_argument("names", nargs="*", choices=[[], *WORKFLOWS], help="only these workflows")
    args = parser.parse_args(argv)
    base = comfyui_host.prepare_base_directory(Path(tempfile.mkdtemp(prefix="video-unlearning-workflows-")))
    with comfyui_host.ComfyServer(base, comfy=args.comfyui) as server:
        object_info = server.get("/object_info")
    WORKFLOWS_DIR.mkdir(exist_ok=True)
    built = {k: v for k, v in build(object_info).items() if k in (args.names or WORKFLOWS)}
    for name, workflow in built.items():
        path = WORKFLOWS_DIR / f"{name}.json"
        write_atomically(path, (json.dumps(workflow, indent=2) + "\n").encode())
        print(f"wrote {path.relative_to(comfyui_host.REPO_ROOT)}")
    for name in sorted(set(args.names or WORKFLOWS) - set(built)):
        print(f"left {name}: this ComfyUI lacks {', '.join(missing_nodes(name, object_info))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
