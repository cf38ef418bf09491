"""What the pack refuses, each case with its message: non-finite numbers on their way into a MODEL
or a file (LoRA files, LORA_MODEL inputs, refusal vectors, strengths and other float inputs), and
files it cannot read as a LoRA. Every refusal names the input or file and leaves nothing behind: no
patched model, no file written."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace

import pytest
import safetensors.torch
import torch

import graphs
from fixtures.tiny_models import TINY_MODELS

WAN = "tiny_wan21_t2v"
LAYERS = {"blocks.0.cross_attn.k": 256, "blocks.1.self_attn.q": 256}  # module: width (in = out)
FOLDER = "strict"


@pytest.fixture(autouse=True)
def as_comfyui_runs_nodes():
    with graphs.as_comfyui_runs_nodes():
        yield


@functools.cache
def wan_model():
    import nodes

    return nodes.UNETLoader().load_unet(TINY_MODELS[WAN].filename, "default")[0]


@functools.cache
def wan_clip():
    from comfy_test_nodes.nodes import TinyTextEncoderLoader

    spec = TINY_MODELS[WAN]
    return TinyTextEncoderLoader.execute(spec.text_encoder_file, spec.family).result[0]


def good_lora():
    from video_unlearning.erasure.lora_format import build_lora

    gen = torch.Generator().manual_seed(0)
    factors = {
        m: (torch.randn(w, 2, generator=gen) * 0.01, torch.randn(2, w, generator=gen))
        for m, w in LAYERS.items()
    }
    return build_lora(factors, {"method": "test", "base_architecture": "wan21_t2v"})


def loras_dir(host_base):
    folder = host_base / "models" / "loras" / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write(host_base, name: str, tensors: dict, metadata=None) -> str:
    safetensors.torch.save_file(tensors, str(loras_dir(host_base) / name), metadata=metadata)
    return f"{FOLDER}/{name}"


def write_bytes(host_base, name: str, data: bytes) -> str:
    (loras_dir(host_base) / name).write_bytes(data)
    return f"{FOLDER}/{name}"


def load(name: str, strength: float = 1.0):
    from video_unlearning.nodes.lora_file_nodes import UnlearnLoadLoRA

    return UnlearnLoadLoRA.execute(wan_model(), name, strength).result


def refused_by_load(name: str, message: str, strength: float = 1.0) -> str:
    with pytest.raises(ValueError, match=message) as error:
        load(name, strength)
    assert wan_model().patches == {}
    print(f"{name}: {error.value}")
    return str(error.value)


def header_file(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


# --- non-finite numbers ---------------------------------------------------------------------------

UP_KEY = "diffusion_model.blocks.0.cross_attn.k.lora_up.weight"
ALPHA_KEY = "diffusion_model.blocks.0.cross_attn.k.alpha"


def test_load_lora_refuses_nan_and_inf_in_a_file_by_name_and_key(comfy, host_base):
    lora = good_lora()
    assert len(load(write(host_base, "good.safetensors", dict(lora)))[0].patches) == 2

    nan_up = dict(lora, **{UP_KEY: torch.full((256, 2), math.nan)})
    refused_by_load(
        write(host_base, "nan_up.safetensors", nan_up),
        rf"nan_up.safetensors: {UP_KEY} has 512 NaN of 512 values \(the first at \[0, 0\]\)",
    )
    one_inf = dict(lora)
    one_inf[UP_KEY] = lora[UP_KEY].clone()
    one_inf[UP_KEY][3, 1] = -math.inf
    refused_by_load(
        write(host_base, "inf_up.safetensors", one_inf),
        rf"{UP_KEY} has 1 infinite of 512 values \(the first at \[3, 1\]\)",
    )
    refused_by_load(
        write(host_base, "nan_alpha.safetensors", dict(lora, **{ALPHA_KEY: torch.tensor(math.nan)})),
        rf"nan_alpha.safetensors: {ALPHA_KEY} has 1 NaN",
    )
    # finite in the file, but alpha / rank x strength overflows float32 once applied
    huge = write(host_base, "huge_alpha.safetensors", dict(lora, **{ALPHA_KEY: torch.tensor(1e38)}))
    refused_by_load(
        huge,
        r"huge_alpha.safetensors: blocks.0.cross_attn.k up x alpha / rank x strength has .* infinite",
        10.0,
    )
    bf16 = {k: v.to(torch.bfloat16) for k, v in nan_up.items()}
    refused_by_load(
        write(host_base, "nan_bf16.safetensors", bf16), f"nan_bf16.safetensors: {UP_KEY} has 512 NaN"
    )


@pytest.mark.parametrize("strength", [math.nan, math.inf, -math.inf])
def test_load_lora_refuses_a_non_finite_strength(comfy, host_base, strength):
    name = write(host_base, "good.safetensors", dict(good_lora()))
    refused_by_load(
        name, rf"Unlearn: Load LoRA's strength is {strength}: it must be a finite number", strength
    )


def test_save_lora_refuses_non_finite_lora_inputs_and_writes_nothing(comfy, host_base):
    from video_unlearning.erasure.lora_format import LoraStateDict
    from video_unlearning.nodes.lora_file_nodes import UnlearnSaveLoRA

    folder = host_base / "models" / "loras" / "strict_save"
    lora = good_lora()
    broken = LoraStateDict(dict(lora, **{UP_KEY: torch.full((256, 2), math.nan)}), lora.metadata)
    with pytest.raises(ValueError, match=rf"Unlearn: Save LoRA's lora input: {UP_KEY} has 512 NaN"):
        UnlearnSaveLoRA.execute(broken, "strict_save/nan")
    big = LoraStateDict(dict(lora, **{UP_KEY: torch.full((256, 2), 1e5)}), lora.metadata)
    with pytest.raises(ValueError, match=rf"{UP_KEY} has 512 infinite .* once stored as fp16 .* 6.55e\+04"):
        UnlearnSaveLoRA.execute(big, "strict_save/overflow", "fp16")
    assert not folder.exists() or not list(folder.iterdir())  # nothing written, no staging file left
    name = UnlearnSaveLoRA.execute(big, "strict_save/overflow", "bf16").result[0]  # bf16 holds 1e5
    assert name == "strict_save/overflow_00001_.safetensors"


@functools.cache
def wan_vector():
    from video_unlearning.nodes.refusal_nodes import UnlearnRefusalEstimate

    out = UnlearnRefusalEstimate.execute(
        wan_model(),
        wan_clip(),
        "custom",
        "nudity",
        "a nude woman on a beach\na nude man in a room",
        "a clothed woman on a beach\na clothed man in a room",
        "a dog in a park\na red car",
        2,
        10.0,
        2,
    )
    return out.result[0]


def apply(vector, strength=1.0, model=None):
    from video_unlearning.nodes.refusal_nodes import UnlearnRefusalApply

    return UnlearnRefusalApply.execute(model or wan_model(), vector, strength, "all")


@pytest.mark.parametrize("strength", [math.nan, math.inf])
def test_refusal_apply_refuses_a_non_finite_strength(comfy, strength):
    with pytest.raises(ValueError, match=rf"^strength is {strength}: it must be a finite number"):
        apply(wan_vector(), strength)
    assert wan_model().patches == {}


def test_refusal_apply_refuses_non_finite_vectors_and_model_weights(comfy):
    vector = wan_vector()
    site = vector.sites[0]
    directions = site.directions.clone()
    directions[0, 7] = math.nan
    broken = replace(vector, sites=(replace(site, directions=directions), *vector.sites[1:]))
    with pytest.raises(
        ValueError,
        match=r"refusal_vector: site context directions has 1 NaN of 256 values \(the first at \[0, 7\]\)",
    ):
        apply(broken)
    neutral = site.neutral.clone()
    neutral[2, 0] = math.inf
    with pytest.raises(ValueError, match=r"refusal_vector: site context neutral has 1 infinite"):
        apply(replace(vector, sites=(replace(site, neutral=neutral),)))
    with pytest.raises(ValueError, match=r"refusal_vector's alpha is nan"):
        apply(replace(vector, alpha=math.nan))
    assert wan_model().patches == {}

    import comfy.weight_adapter  # noqa: F401

    model = wan_model().clone()  # a MODEL already broken upstream: a NaN patch on one edited layer
    key = "diffusion_model.blocks.1.cross_attn.v.weight"
    model.add_patches({key: (torch.full((256, 256), math.nan),)}, 1.0)
    with pytest.raises(
        ValueError, match=r"the MODEL: blocks.1.cross_attn.v.weight has 65536 NaN .*broken before the edit"
    ):
        apply(vector, model=model)


def test_refusal_estimate_refuses_a_non_finite_alpha(comfy):
    from video_unlearning.nodes.refusal_nodes import UnlearnRefusalEstimate

    with pytest.raises(ValueError, match=r"^alpha is nan: it must be a finite number"):
        UnlearnRefusalEstimate.execute(
            wan_model(), wan_clip(), "custom", "x", "a nude woman", "a woman", "a dog", 1, math.nan, 2
        )


def test_patches_with_non_finite_factors_are_refused_before_anything_is_patched(comfy):
    from video_unlearning.nodes import comfy_compat

    up = torch.zeros(256, 1)
    factors = {
        "blocks.0.cross_attn.k": (up, torch.zeros(1, 256)),
        "blocks.0.cross_attn.v": (up, torch.full((1, 256), math.nan)),
    }
    with pytest.raises(ValueError, match=r"the patch: blocks.0.cross_attn.v down has 256 NaN"):
        comfy_compat.add_lowrank_patches(wan_model(), factors)
    assert wan_model().patches == {}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(learning_rate=math.inf), r"^learning_rate is inf: it must be a finite number"),
        (dict(learning_rate=math.nan), r"^learning_rate is nan"),
        (dict(eta=math.nan), r"^eta is nan"),
        (dict(localization_weight=math.nan), r"^localization_weight is nan"),
        (dict(preservation_weight=math.inf), r"^preservation_weight is inf"),
        (dict(mask_threshold=math.nan), r"^mask_threshold is nan"),
    ],
)
def test_train_lora_refuses_non_finite_float_inputs(comfy, overrides, message):
    from test_train_lora import train

    with pytest.raises(ValueError, match=message):
        train(
            wan_model(), wan_clip(), ["nudity"], latents={"samples": torch.randn(1, 16, 1, 8, 8)}, **overrides
        )


def test_train_lora_refuses_non_finite_latents(comfy):
    from test_train_lora import train

    samples = torch.randn(1, 16, 1, 8, 8)
    samples[0, 3, 0, 2, 2] = math.nan
    with pytest.raises(
        ValueError, match=r"the latents: samples has 1 NaN of 1024 values \(the first at \[0, 3, 0, 2, 2\]\)"
    ):
        train(wan_model(), wan_clip(), ["nudity"], latents={"samples": samples})


def test_checks_name_what_is_wrong():
    from video_unlearning.erasure import checks

    assert checks.non_finite(torch.ones(3)) is None
    assert checks.non_finite(torch.arange(3)) is None  # integers are always finite
    t = torch.tensor([1.0, math.nan, math.inf, -math.inf, math.nan])
    assert checks.non_finite(t) == "2 NaN and 2 infinite of 5 values (the first at [1])"
    assert checks.finite_number("x", 2) == 2.0
    with pytest.raises(ValueError, match="x is True, not a number"):
        checks.finite_number("x", True)
    with pytest.raises(ValueError, match="x is '1', not a number"):
        checks.finite_number("x", "1")


# --- files the pack cannot read ---------------------------------------------------------------------

READS = r"the pack reads \.safetensors LoRA files of float16, bfloat16, float32 or float64 tensors"


def test_unreadable_files_are_refused_by_name_saying_what_the_pack_reads(comfy, host_base):
    import zipfile

    good = write(host_base, "good.safetensors", dict(good_lora()))
    good_bytes = (host_base / "models" / "loras" / good).read_bytes()
    length = int.from_bytes(good_bytes[:8], "little")

    pickled = loras_dir(host_base) / "pickle.safetensors"
    torch.save(dict(good_lora()), str(pickled))  # a torch zip archive under a .safetensors name
    assert zipfile.is_zipfile(pickled)
    cases = [
        (
            "pickle.safetensors",
            None,
            rf"pickle.safetensors: its first 8 bytes give a header of \d+ bytes, more than a safetensors "
            rf"header may have \(100000000\): it is not a safetensors file, or a damaged one; {READS}",
        ),
        (
            "text.safetensors",
            b"just some text, not a LoRA\n",
            "text.safetensors: its first 8 bytes give a header of",
        ),
        (
            "short.safetensors",
            b"\x01\x00",
            "short.safetensors: it is 2 bytes long, too short for a safetensors file",
        ),
        ("empty.safetensors", b"", "empty.safetensors: it is 0 bytes long"),
        (
            "terabyte.safetensors",
            (2**40).to_bytes(8, "little") + b"{}",
            "terabyte.safetensors: its first 8 bytes give a header of 1099511627776 bytes",
        ),
        (
            "claims_more.safetensors",
            (5000).to_bytes(8, "little") + good_bytes[8:200],
            "claims_more.safetensors: its header claims 5000 bytes but only 192 follow: the file is "
            "truncated or not a safetensors file",
        ),
        (
            "cut_header.safetensors",
            good_bytes[: 8 + length // 2],
            rf"cut_header.safetensors: its header claims {length} bytes but only {length // 2} follow",
        ),
        (
            "truncated.safetensors",
            good_bytes[:-100],
            r"truncated.safetensors: tensor '.*' ends at byte \d+ of the data but the file holds only "
            r"\d+: the file is truncated",
        ),
        (
            "not_json.safetensors",
            (6).to_bytes(8, "little") + b"{nope}",
            "not_json.safetensors: its header is not JSON",
        ),
        ("list.safetensors", header_file([1, 2]), "list.safetensors: its header is not a JSON object"),
        (
            "int.safetensors",
            _file({UP_KEY: torch.ones(256, 2, dtype=torch.int32)}),
            f"int.safetensors: tensor '{UP_KEY}' is I32; LoRA tensors must be F16, BF16, F32 or F64",
        ),
        (
            "bool.safetensors",
            _file({UP_KEY: torch.ones(256, 2, dtype=torch.bool)}),
            f"tensor '{UP_KEY}' is BOOL",
        ),
        (
            "fp8.safetensors",
            _file({UP_KEY: torch.ones(256, 2).to(torch.float8_e4m3fn)}),
            f"tensor '{UP_KEY}' is F8_E4M3",
        ),
        (
            "offsets.safetensors",
            header_file({UP_KEY: {"dtype": "F32", "shape": [256, 2], "data_offsets": [0, 100]}}, bytes(100)),
            rf"tensor '{UP_KEY}' \(F32 \[256, 2\]\) needs 2048 bytes but its offsets span 100",
        ),
        (
            "shape.safetensors",
            header_file({UP_KEY: {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)),
            r"has the shape \[-1\]",
        ),
        (
            "entry.safetensors",
            header_file({UP_KEY: {"dtype": "F32"}}),
            "has no dtype, shape and data_offsets entry",
        ),
        (
            "metadata.safetensors",
            header_file({"__metadata__": {"steps": 30}}),
            "its __metadata__ is not a map of strings",
        ),
        (
            "duplicate.safetensors",
            _duplicate_key_file(),
            f"duplicate.safetensors: its header names '{UP_KEY}' twice",
        ),
    ]
    for name, data, message in cases:
        if data is not None:
            write_bytes(host_base, name, data)
        text = refused_by_load(f"{FOLDER}/{name}", message)
        assert READS.replace("\\", "") in text
    with pytest.raises(ValueError, match=rf"only .safetensors LoRA files are read, not 'good.ckpt'; {READS}"):
        torch.save(dict(good_lora()), str(loras_dir(host_base) / "good.ckpt"))
        load(f"{FOLDER}/good.ckpt")


def _file(tensors: dict) -> bytes:
    return safetensors.torch.save(tensors)


def _duplicate_key_file() -> bytes:
    """Two entries under one name in the JSON header (safetensors itself says 'invalid offset')."""
    entry = '{"dtype":"F32","shape":[256,2],"data_offsets":[%d,%d]}'
    text = f'{{"{UP_KEY}":{entry % (0, 2048)},"{UP_KEY}":{entry % (2048, 4096)}}}'.encode()
    return len(text).to_bytes(8, "little") + text + bytes(4096)


def test_keys_the_pack_does_not_read_are_refused(comfy, host_base):
    lora = dict(good_lora())
    base = "diffusion_model.blocks.0.cross_attn.k"
    cases = [
        (
            "dora.safetensors",
            {**lora, base + ".dora_scale": torch.ones(256, 1)},
            rf"dora.safetensors: 1 key\(s\) are no LoRA entry the pack reads, e.g. "
            rf"\['{base}.dora_scale'\]; {READS}",
        ),
        (
            "diff.safetensors",
            {**lora, "diffusion_model.blocks.0.ffn.0.diff": torch.ones(512, 256)},
            r"no LoRA entry the pack reads, e.g. \['diffusion_model.blocks.0.ffn.0.diff'\]",
        ),
        (
            "mid.safetensors",
            {**lora, base + ".lora_mid.weight": torch.ones(2, 2)},
            r"e.g. \['diffusion_model.blocks.0.cross_attn.k.lora_mid.weight'\]",
        ),
        (
            "model.safetensors",
            {"diffusion_model.blocks.0.cross_attn.k.weight": torch.ones(256, 256)},
            r"e.g. \['diffusion_model.blocks.0.cross_attn.k.weight'\]",
        ),
        (
            "same_layer.safetensors",
            {
                **lora,
                **{
                    k.replace(base, "lora_unet_blocks_0_cross_attn_k"): v.clone()
                    for k, v in lora.items()
                    if k.startswith(base)
                },
            },
            rf"same_layer.safetensors: 2 of 3 LoRA modules fit this model; "
            rf"lora_unet_blocks_0_cross_attn_k: the same layer as {base}",
        ),
        (
            "two_formats.safetensors",
            {**lora, base + ".lora_A.weight": torch.ones(2, 256)},
            rf"two_formats.safetensors: layer '{base}' has two down tensors: "
            rf"{base}.lora_(A|down).weight and {base}",
        ),
        (
            "mixed.safetensors",
            {base + ".lora_up.weight": torch.ones(256, 2), base + ".lora_A.weight": torch.ones(2, 256)},
            "are of two LoRA formats",
        ),
        (
            "no_down.safetensors",
            {base + ".lora_B.weight": torch.ones(256, 2)},
            rf"LoRA module '{base}' lacks its lora_A.weight tensor",
        ),
        (
            "alpha_only.safetensors",
            {base + ".alpha": torch.tensor(2.0)},
            rf"LoRA module '{base}' lacks its lora_up.weight tensor",
        ),
        (
            "alpha_shape.safetensors",
            {**lora, base + ".alpha": torch.ones(2)},
            rf"{base}.alpha must be one non-zero value",
        ),
        (
            "alpha_zero.safetensors",
            {**lora, base + ".alpha": torch.tensor(0.0)},
            rf"{base}.alpha must be one non-zero value",
        ),
        (
            "rank.safetensors",
            {**lora, base + ".lora_down.weight": torch.ones(3, 256)},
            r"up \(256, 2\) and down \(3, 256\) do not multiply",
        ),
    ]
    for name, tensors, message in cases:
        refused_by_load(write(host_base, name, tensors), message)


def test_lora_model_inputs_that_are_no_lora_are_refused(comfy):
    from video_unlearning.erasure.lora_format import LoraStateDict
    from video_unlearning.nodes.lora_file_nodes import UnlearnSaveLoRA

    lora = good_lora()
    cases = [
        (
            {**lora, UP_KEY: torch.ones(256, 2, dtype=torch.int64)},
            f"{UP_KEY} is int64; LoRA tensors must be float16",
        ),
        ({**lora, UP_KEY: [1.0, 2.0]}, f"{UP_KEY} is a list, not a tensor"),
        (
            {k.replace("lora_up", "lora_B").replace("lora_down", "lora_A"): v for k, v in lora.items()},
            "is PEFT's format",
        ),
    ]
    for tensors, message in cases:
        with pytest.raises(ValueError, match=rf"Unlearn: Save LoRA's lora input: .*{message}"):
            UnlearnSaveLoRA.execute(LoraStateDict(tensors), "strict_save/bad")
