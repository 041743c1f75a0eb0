"""SLIP backbones from SLIP's own checkpoint file (ucat.slip).

The checkpoints here are random, written in SLIP's exact layout (SLIP main.py: a dict with
``state_dict`` whose keys carry DDP's ``module.`` prefix, ``args``, ``epoch``...; key names and
shapes from SLIP models.py and the timm ViT it builds).  The reference forward below is written
from SLIP's model definition with plain tensor operations (no timm, no open_clip), so the
converted open_clip model is checked against SLIP's semantics, not against the code it runs.

Sizes: the numerical checks use a reduced SLIP (timm's 6-layer, 64-wide ``test_vit`` image tower at
160 px, a 2-layer text tower), built and loaded once per module, so each takes a second or two.  The
full ViT-B/16 is checked by names and shapes (every key of ``slip_base_25ep.pt``'s SLIP_VITB16 maps
onto the registered model; no weights are drawn); its forward at full size, which needs a random
150M-parameter file and about 30 s, is the one ``slow`` test.
"""

from __future__ import annotations

import argparse
import gzip
import html
import math
from importlib import resources

import ftfy
import pytest
import regex
import torch
import torch.nn.functional as F

from ucat import backbone, data, models, slip, train
from ucat.errors import CheckpointError, ConfigError
from ucat.report import reference

# the reduced SLIP: timm's test_vit (patch 16, width 64, depth 6, 2 heads, MLP ratio 3) at 160 px
TINY = slip.SlipArchitecture("SLIP_TINY", "test_vit", image_size=160, embed_dim=32, text_width=64, text_heads=2,
                             text_layers=2)
TINY_DIMS = dict(width=64, depth=6, mlp=192, patch=16, image_size=160, vision_heads=2)
FULL_DIMS = dict(width=768, depth=12, mlp=3072, patch=16, image_size=224, vision_heads=12)   # vit_base_patch16_224


# ---------------------------------------------------------------- SLIP's layout and forward (reference)

def slip_layout(width, depth, mlp, patch, image_size, vision_heads, spec, ssl_mlp=4096, ssl_emb=256):
    """Name -> shape of SLIP's state dict (SLIP models.py CLIP/SLIP classes, timm VisionTransformer names)."""
    del vision_heads
    grid = image_size // patch
    out = {"visual.cls_token": (1, 1, width), "visual.pos_embed": (1, grid * grid + 1, width),
           "visual.patch_embed.proj.weight": (width, 3, patch, patch), "visual.patch_embed.proj.bias": (width,)}
    for i in range(depth):
        b = f"visual.blocks.{i}."
        out.update({b + "norm1.weight": (width,), b + "norm1.bias": (width,),
                    b + "attn.qkv.weight": (3 * width, width), b + "attn.qkv.bias": (3 * width,),
                    b + "attn.proj.weight": (width, width), b + "attn.proj.bias": (width,),
                    b + "norm2.weight": (width,), b + "norm2.bias": (width,),
                    b + "mlp.fc1.weight": (mlp, width), b + "mlp.fc1.bias": (mlp,),
                    b + "mlp.fc2.weight": (width, mlp), b + "mlp.fc2.bias": (width,)})
    out.update({"visual.norm.weight": (width,), "visual.norm.bias": (width,)})
    tw = spec.text_width
    for i in range(spec.text_layers):
        b = f"transformer.resblocks.{i}."
        out.update({b + "attn.in_proj_weight": (3 * tw, tw), b + "attn.in_proj_bias": (3 * tw,),
                    b + "attn.out_proj.weight": (tw, tw), b + "attn.out_proj.bias": (tw,),
                    b + "ln_1.weight": (tw,), b + "ln_1.bias": (tw,),
                    b + "mlp.c_fc.weight": (4 * tw, tw), b + "mlp.c_fc.bias": (4 * tw,),
                    b + "mlp.c_proj.weight": (tw, 4 * tw), b + "mlp.c_proj.bias": (tw,),
                    b + "ln_2.weight": (tw,), b + "ln_2.bias": (tw,)})
    out.update({"token_embedding.weight": (spec.vocab_size, tw), "positional_embedding": (spec.context_length, tw),
                "ln_final.weight": (tw,), "ln_final.bias": (tw,), "image_projection": (width, spec.embed_dim),
                "text_projection": (tw, spec.embed_dim), "logit_scale": ()})
    # SLIP's SimCLR head (SLIP._build_mlp): Linear, SyncBatchNorm, ReLU, Linear, SyncBatchNorm, ReLU, Linear
    for j, (fan_out, fan_in) in enumerate([(ssl_mlp, width), (ssl_mlp, ssl_mlp), (ssl_emb, ssl_mlp)], start=1):
        out.update({f"image_mlp.layer{j}.weight": (fan_out, fan_in), f"image_mlp.layer{j}.bias": (fan_out,)})
        if j < 3:
            out.update({f"image_mlp.bn{j}.{n}": (fan_out,) for n in ("weight", "bias", "running_mean", "running_var")})
            out[f"image_mlp.bn{j}.num_batches_tracked"] = ()
    return out


def random_state(layout: dict, seed: int = 0) -> dict:
    """Random weights of SLIP's layout at scales that keep activations O(1) (norm gains near 1)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000, dtype=torch.long)
        elif name == "logit_scale":
            state[name] = torch.tensor(4.55)
        elif name.endswith(("running_var",)) or (name.endswith(".weight") and len(shape) == 1):
            state[name] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif name in ("image_projection", "text_projection"):
            state[name] = torch.randn(shape, generator=g) * shape[0] ** -0.5
        else:
            state[name] = 0.05 * torch.randn(shape, generator=g)
    return state


def save_slip_file(path, state: dict, model_name: str) -> None:
    """A checkpoint as SLIP's main.py writes it (utils.save_on_master of a DDP model)."""
    torch.save({"epoch": 25, "state_dict": {"module." + k: v for k, v in state.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "betas": (0.9, 0.98), "params": [0]}]},
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0}, "best_acc1": 0.0,
                "args": argparse.Namespace(model=model_name, ssl_mlp_dim=4096, ssl_emb_dim=256, lr=3e-3)}, path)


def _layer_norm(x, sd, name, eps):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)


def _attention(x, w_qkv, b_qkv, w_out, b_out, heads, mask=None):
    n, length, width = x.shape
    q, k, v = (x @ w_qkv.t() + b_qkv).split(width, dim=-1)
    q, k, v = (t.reshape(n, length, heads, width // heads).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if mask is not None:
        scores = scores + mask
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, width)
    return out @ w_out.t() + b_out


def slip_encode_image(sd, images, depth, patch, vision_heads, **_):
    """SLIP encode_image: timm ViT (pre-norm, LayerNorm eps 1e-6, exact GELU, class token after the
    final norm, no classifier) then ``@ image_projection``."""
    x = F.conv2d(images, sd["visual.patch_embed.proj.weight"], sd["visual.patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd["visual.cls_token"].expand(len(x), -1, -1), x], dim=1) + sd["visual.pos_embed"]
    for i in range(depth):
        b = f"visual.blocks.{i}."
        x = x + _attention(_layer_norm(x, sd, b + "norm1", 1e-6), sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"],
                           sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"], vision_heads)
        h = _layer_norm(x, sd, b + "norm2", 1e-6)
        h = F.gelu(h @ sd[b + "mlp.fc1.weight"].t() + sd[b + "mlp.fc1.bias"])
        x = x + h @ sd[b + "mlp.fc2.weight"].t() + sd[b + "mlp.fc2.bias"]
    x = _layer_norm(x, sd, "visual.norm", 1e-6)
    return x[:, 0] @ sd["image_projection"]


def slip_encode_text(sd, tokens, spec):
    """SLIP encode_text: token + positional embedding, CLIP resblocks (QuickGELU, causal -inf mask,
    LayerNorm eps 1e-5), ln_final, the feature at the highest token id (EOT) ``@ text_projection``."""
    x = sd["token_embedding.weight"][tokens] + sd["positional_embedding"]
    length = tokens.shape[1]
    mask = torch.full((length, length), float("-inf")).triu(1)
    for i in range(spec.text_layers):
        b = f"transformer.resblocks.{i}."
        x = x + _attention(_layer_norm(x, sd, b + "ln_1", 1e-5), sd[b + "attn.in_proj_weight"],
                           sd[b + "attn.in_proj_bias"], sd[b + "attn.out_proj.weight"], sd[b + "attn.out_proj.bias"],
                           spec.text_heads, mask)
        h = _layer_norm(x, sd, b + "ln_2", 1e-5) @ sd[b + "mlp.c_fc.weight"].t() + sd[b + "mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ sd[b + "mlp.c_proj.weight"].t() + sd[b + "mlp.c_proj.bias"]
    x = _layer_norm(x, sd, "ln_final", 1e-5)
    return x[torch.arange(len(x)), tokens.argmax(-1)] @ sd["text_projection"]


# ---------------------------------------------------------------- SLIP's tokenizer (reference)

def _byte_alphabet() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class SlipTokenizer:
    """SLIP tokenizer.py's SimpleTokenizer behaviour: ftfy + double HTML unescape, whitespace collapse,
    lower case, CLIP's regex split, byte-level BPE on the bundled merges, SOT ... EOT, zero padding,
    and plain truncation to the context length (the EOT is cut off a long text)."""

    def __init__(self, context_length=77):
        bpe = resources.files("open_clip").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
        merges = [tuple(line.split()) for line in gzip.decompress(bpe).decode("utf-8").split("\n")[1:48895]]
        self.bytes = _byte_alphabet()
        symbols = list(self.bytes.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.ids = {s: i for i, s in enumerate(vocab)}
        self.rank = {m: i for i, m in enumerate(merges)}
        self.split = regex.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"
                                   r"[^\s\p{L}\p{N}]+", regex.IGNORECASE)
        self.context_length = context_length

    def _merge(self, word: str) -> list[str]:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            ranked = [(self.rank.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            best, at = min(ranked)
            if best == math.inf:
                break
            pair, merged, i = (parts[at], parts[at + 1]), [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def encode(self, text: str) -> list[int]:
        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        text = " ".join(text.split()).lower()
        out = []
        for piece in self.split.findall(text):
            if piece in ("<|startoftext|>", "<|endoftext|>"):
                out.append(self.ids[piece])
                continue
            word = "".join(self.bytes[b] for b in piece.encode("utf-8"))
            out += [self.ids[p] for p in self._merge(word)]
        return out

    def __call__(self, texts):
        rows = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in zip(rows, texts):
            ids = [self.ids["<|startoftext|>"]] + self.encode(text) + [self.ids["<|endoftext|>"]]
            ids = ids[:self.context_length]
            row[:len(ids)] = torch.tensor(ids)
        return rows


# ---------------------------------------------------------------- fixtures

SLIP_CFG = {"normalize": "imagenet", "train_projection": False}


@pytest.fixture(scope="module")
def tiny_slip(tmp_path_factory):
    """A random reduced SLIP checkpoint on disk and its state dict (keys without the DDP prefix);
    ``SLIP-Tiny`` names it in the registry while this module's tests run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(slip.ARCHITECTURES, "SLIP-Tiny", TINY)
        state = random_state(slip_layout(**TINY_DIMS, spec=TINY))
        path = tmp_path_factory.mktemp("slip") / "slip_tiny.pt"
        save_slip_file(path, state, "SLIP_TINY")
        yield path, state


@pytest.fixture(scope="module")
def tiny_model(tiny_slip):
    """The reduced SLIP loaded through ucat.slip, once: ``(model, arch, meta)``; tests must not modify it."""
    return _load(tiny_slip[0])


def _load(path, cfg=SLIP_CFG, name="SLIP-Tiny"):
    return slip.load({"name": name, "pretrained": str(path)}, cfg)


# ---------------------------------------------------------------- tests

def test_converted_model_computes_slips_embeddings(tiny_slip, tiny_model):
    _, state = tiny_slip
    model, arch, meta = tiny_model
    images = torch.rand(3, 3, 160, 160, generator=torch.Generator().manual_seed(1)) * 4 - 2
    tokens = SlipTokenizer()(["a photo of a cat.", "This is a photo of a DOG", "x"])
    with torch.no_grad():
        ours_img, ours_txt = model.encode_image(images), model.encode_text(tokens)
    ref_img, ref_txt = slip_encode_image(state, images, **TINY_DIMS), slip_encode_text(state, tokens, TINY)
    assert ours_img.shape == (3, 32) and ours_txt.shape == (3, 32)
    torch.testing.assert_close(ours_img, ref_img, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours_txt, ref_txt, rtol=1e-4, atol=1e-5)
    assert ref_img.std() > 0.1 and (ref_img[0] - ref_img[1]).abs().max() > 0.1   # not a degenerate comparison
    assert meta["source"] == "slip" and meta["slip_model"] == "SLIP_TINY" and meta["epoch"] == 25
    assert meta["checkpoint_logit_scale"] == pytest.approx(math.exp(4.55), rel=1e-6)
    assert len(meta["sha256"]) == 64


def test_logit_scale_is_fixed_at_100_and_the_normalisation_is_the_configured_one(tiny_slip, tiny_model):
    path, _ = tiny_slip
    for normalize, mean, std in (("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                                 ("clip", (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))):
        model, arch, _ = tiny_model if normalize == "imagenet" else _load(path, {"normalize": normalize,
                                                                                "train_projection": False})
        clf = models.ZeroShotClassifier.from_clip(model, arch, ["cat", "dog"], ["a photo of a {}."])
        assert clf.logit_scale == 100.0                  # exactly: the checkpoint's learned exp(4.55) is not used
        assert clf.mean.flatten().tolist() == pytest.approx(mean) and clf.std.flatten().tolist() == pytest.approx(std)
        x = torch.rand(2, 3, 160, 160)
        expected = 100 * F.normalize(model.encode_image((x - clf.mean) / clf.std), dim=-1) @ clf.class_features.t()
        torch.testing.assert_close(clf(x), expected)


def test_backbone_checkpoint_round_trips_with_its_architecture(tiny_model, tmp_path):
    model, arch, meta = tiny_model
    models.save_checkpoint(tmp_path / "backbone.pt", model, arch, meta)
    again, arch2, meta2 = models.load_checkpoint(tmp_path / "backbone.pt")
    assert arch2 == arch and meta2 == meta
    assert again.visual.preprocess_cfg["mean"] == model.visual.preprocess_cfg["mean"]
    assert not again.visual.head.proj.weight.requires_grad and again.visual.trunk.cls_token.requires_grad
    x = torch.rand(2, 3, 160, 160)
    assert torch.equal(again.encode_image(x), model.encode_image(x))
    assert float(again.logit_scale.detach().exp()) >= 100.0


def test_tokenizer_matches_slips_simple_tokenizer(tiny_model):
    model, arch, _ = tiny_model
    texts = ["a photo of a cat", "This is a photo of a {}".format("Yorkshire Terrier"), "  A  PHOTO\tof   a\ncar  ",
             "a photo of the number: \"7\".", "it's a bad photo of the café &amp; the crème brûlée",
             "a tattoo of a ☕ (coffee)!", "", "SUN397: abbey, airplane cabin, art-gallery 3D",
             " ".join(["photo"] * 74)]  # 74 words + SOT + EOT: exactly the context
    ours, ref = models.tokenize(model, arch, texts), SlipTokenizer()(texts)
    assert torch.equal(ours, ref)
    # CLIP's published ids (SOT, a, photo, of, a, cat, EOT): the reference tokenizer is the real one
    assert ref[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407] and ref[0, 7:].eq(0).all()
    # past the context SLIP cuts the EOT off, open_clip keeps it as the last token; the official UCAT
    # code's clip.tokenize refuses such a text, so no prompt of the pipeline reaches this
    long = [" ".join(["photo"] * 80)]
    ours, ref = models.tokenize(model, arch, long), SlipTokenizer()(long)
    assert torch.equal(ours[0, :76], ref[0, :76]) and ours[0, 76] == 49407 and ref[0, 76] != 49407


def test_missing_truncated_and_foreign_files_are_one_line_errors(tiny_slip, tmp_path):
    path, state = tiny_slip

    def error(p) -> str:
        with pytest.raises(CheckpointError) as info:
            _load(p)
        message = str(info.value)
        assert "\n" not in message and str(p) in message
        return message

    assert "not found" in error(tmp_path / "absent.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert "truncated" in error(tmp_path / "cut.pt")
    torch.save({"model": state}, tmp_path / "no_state_dict.pt")
    assert "not a SLIP checkpoint" in error(tmp_path / "no_state_dict.pt")

    partial = {k: v for k, v in state.items() if not k.startswith(("visual.blocks.5.", "ln_final"))}
    save_slip_file(tmp_path / "partial.pt", partial, "SLIP_TINY")
    message = error(tmp_path / "partial.pt")
    assert "14 missing key(s): visual.blocks.5.norm1.weight, visual.blocks.5.norm1.bias, " in message

    wrong = dict(state, image_projection=state["image_projection"].t(), **{"visual.pos_embed": torch.zeros(1, 50, 64)})
    save_slip_file(tmp_path / "wrong.pt", wrong, "SLIP_TINY")
    message = error(tmp_path / "wrong.pt")
    assert "2 misshapen key(s)" in message and "visual.pos_embed (1, 50, 64) (needs (1, 101, 64))" in message
    assert "image_projection (32, 64) (needs (64, 32))" in message

    save_slip_file(tmp_path / "extra.pt", dict(state, **{"visual.head.weight": torch.zeros(1000, 64)}), "SLIP_TINY")
    assert "1 unexpected key(s): visual.head.weight" in error(tmp_path / "extra.pt")

    save_slip_file(tmp_path / "clip_model.pt", state, "CLIP_VITB16")
    assert "holds SLIP's CLIP_VITB16, not SLIP_TINY" in error(tmp_path / "clip_model.pt")


def test_unknown_slip_architecture_is_a_config_error():
    with pytest.raises(ConfigError, match="SLIP-ViT-L-16.*allowed:.*SLIP-ViT-B-16"):
        slip.load({"name": "SLIP-ViT-L-16", "pretrained": None}, SLIP_CFG)


def test_backbone_stage_writes_a_slip_entry_beside_clip_entries(tiny_slip, tmp_params, tmp_path):
    path, state = tiny_slip
    p = tmp_params
    p["backbone"]["source"] = "open_clip"
    p["backbone"]["models"] = [{"name": "ViT-B-32-quickgelu", "pretrained": None},
                               {"name": "SLIP-Tiny", "pretrained": str(path)}]
    meta = backbone.build(p, "SLIP-Tiny", tmp_path / "models" / "SLIP-Tiny" / "backbone.pt", torch.device("cpu"))
    assert meta["source"] == "slip" and meta["pretrained"] == str(path)
    model, arch, _ = models.load_checkpoint(tmp_path / "models" / "SLIP-Tiny" / "backbone.pt")
    x = torch.rand(1, 3, 160, 160)
    torch.testing.assert_close(model.encode_image(x), slip_encode_image(state, x, **TINY_DIMS), rtol=1e-4, atol=1e-5)


def test_one_finetuning_step_trains_the_image_tower_as_the_official_code(tiny_slip, tmp_params, tmp_path):
    """UCAT on a reduced SLIP: one step moves the timm tower, not the projection (slip-ucat.py:214)."""
    path, _ = tiny_slip
    p = tmp_params
    p["finetune"].update(epochs=1, max_steps_per_epoch=1, batch_size=4, warmup_steps=0, lr=0.05)
    data.prepare("demo_train", p)    # rendered at the demo's size, resized to the model's 160 px when read
    model, arch, meta = _load(path, p["backbone"]["slip"])
    assert p["backbone"]["slip"]["train_projection"] is False
    models.save_checkpoint(tmp_path / "backbone.pt", model, arch, meta)
    out = tmp_path / "model.pt"
    train.finetune(p, "ucat", tmp_path / "backbone.pt", out, tmp_path / "ckpt", tmp_path / "live",
                   torch.device("cpu"), progress=False)
    tuned, arch2, meta2 = models.load_checkpoint(out)
    assert arch2 == arch and meta2["steps"] == 1
    before, after = model.state_dict(), tuned.state_dict()
    qkv = "visual.trunk.blocks.0.attn.qkv.weight"
    assert not torch.equal(before[qkv], after[qkv]) and not torch.equal(before["visual.trunk.norm.weight"],
                                                                          after["visual.trunk.norm.weight"])
    for key in before:   # the projection, the text tower and the logit scale stay
        if not key.startswith("visual.trunk."):
            assert torch.equal(before[key], after[key]), key


def test_train_projection_leaves_every_image_tower_weight_trainable(tiny_slip, tmp_path):
    model, arch, meta = _load(tiny_slip[0], {"normalize": "clip", "train_projection": True})
    models.save_checkpoint(tmp_path / "backbone.pt", model, arch, meta)
    again, _, _ = models.load_checkpoint(tmp_path / "backbone.pt")
    assert again.visual.head.proj.weight.requires_grad and all(p.requires_grad for p in again.visual.parameters())


FULL_SPEC_FROM_SLIP = ("SLIP_VITB16", "vit_base_patch16_224", 224, 512, 77, 49408, 512, 8, 12)  # SLIP models.py:303-308


def test_full_size_slip_vit_b16_registry_entry_takes_slips_exact_layout():
    """Every key and shape of slip_base_25ep.pt's SLIP_VITB16 maps onto the registered model (no weights are
    made: the check is of names and shapes; the forward at full size is the slow test below)."""
    spec = slip.ARCHITECTURES["SLIP-ViT-B-16"]
    assert (spec.slip_model, spec.timm_model, spec.image_size, spec.embed_dim, spec.context_length, spec.vocab_size,
            spec.text_width, spec.text_heads, spec.text_layers) == FULL_SPEC_FROM_SLIP
    layout = slip_layout(**FULL_DIMS, spec=spec)
    assert len(layout) == 4 + 12 * 12 + 2 + 12 * 12 + 2 + 2 + 3 + 3 * 2 + 2 * 5   # ViT, text, projections, SimCLR head
    model = models.create_clip(slip.arch_record(spec, SLIP_CFG))
    converted = slip.convert({k: torch.empty(shape) for k, shape in layout.items()}, model, "slip_base_25ep.pt")
    target = model.state_dict()
    assert converted.keys() == target.keys()
    assert all(converted[k].shape == target[k].shape for k in target)
    assert sum(math.prod(shape) for k, shape in layout.items() if not k.startswith("image_mlp.")) == \
           sum(p.numel() for p in model.parameters())
    with pytest.raises(CheckpointError, match="1 missing key.*: visual.blocks.11.mlp.fc2.bias"):
        slip.convert({k: torch.empty(s) for k, s in layout.items() if k != "visual.blocks.11.mlp.fc2.bias"}, model,
                     "slip_base_25ep.pt")


def test_every_slip_architecture_has_its_published_backbone_row():
    published = {c.backbone for c in reference.load_table("backbones_avg")}
    for name in slip.ARCHITECTURES.keys() - {"SLIP-Tiny"}:
        assert reference.paper_backbone(name) in published


@pytest.mark.slow
def test_full_size_slip_vit_b16_loads_and_computes_slips_embeddings(tmp_path):
    """A random full-size SLIP_VITB16 file through ucat.slip, one image and two prompts through both forwards
    (about 30 s and 2 GB on two cores: the model, its file and the reference)."""
    spec = slip.ARCHITECTURES["SLIP-ViT-B-16"]
    state = random_state(slip_layout(**FULL_DIMS, spec=spec))
    path = tmp_path / "slip_base_25ep.pt"
    save_slip_file(path, state, "SLIP_VITB16")
    model, arch, meta = slip.load({"name": "SLIP-ViT-B-16", "pretrained": str(path)}, SLIP_CFG)
    assert meta["slip_model"] == "SLIP_VITB16" and model.visual.image_size == (224, 224)
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(2)) * 4 - 2
    tokens = SlipTokenizer()(["a photo of a cat.", "This is a photo of a bird"])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(image), slip_encode_image(state, image, **FULL_DIMS),
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.encode_text(tokens), slip_encode_text(state, tokens, spec),
                                   rtol=1e-4, atol=1e-4)
