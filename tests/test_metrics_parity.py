"""Each metric against an independent reference, on real photographs (scikit-image's samples) with drawn masks.

References: torchmetrics' functional forms and modules, the lpips package, scikit-image's SSIM, open_clip's encoders
with the cosine computed by hand, scipy's matrix square root for the Fréchet distance, numpy for KID, and a
per-image Splice/PIE-Bench re-implementation of the structure distance. Agreement: 1e-5 relative unless a test
says why not. Networks are the real architectures with random weights (tiny configs for CLIP and, except in one
test, the ViT), built once per session without any download.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torchmetrics.functional import mean_squared_error
from torchmetrics.functional.classification import (
    binary_f1_score,
    binary_jaccard_index,
    binary_precision,
    binary_recall,
)
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from benchmark.metrics.base import ScoreContext
from benchmark.metrics.images import mask_at, to_unit
from benchmark.registry import METRICS
from tests.metric_fixtures import TINY_VIT, Weights, one_thread, photo, photo_items, weights_for_session

REL = 1e-5
CTX = ScoreContext()


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Weights:
    return weights_for_session(tmp_path_factory)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def close(a: float, b: float, rel: float = REL, abs_: float = 1e-7) -> bool:
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_)


def build(name: str, **params):
    m = METRICS.get(name)(**params)
    m.prepare(CTX)
    return m


def tensors(item, size=None):
    """Reference-side conversion, written independently of the harness: uint8 → float /255, CHW, batch of 1."""
    size = size or item.sample.image.size
    x = torch.from_numpy(np.asarray(item.output.image.resize(size), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    y = torch.from_numpy(np.asarray(item.sample.image.resize(size), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    return x, y


# --- pixel metrics -----------------------------------------------------------------------------------------------


def test_psnr_mse_match_torchmetrics_whole_region_and_multiply():
    items = photo_items(4, sizes=[(96, 96), (80, 64)])  # two sizes: batched by shape
    select = {n: build(n, region=["whole", "background", "edit"]) for n in ("psnr", "mse")}
    multiply = {n: build(n, region=["background", "edit"], mode="multiply") for n in ("psnr", "mse")}
    rows = [{**a, **b} for a, b in zip(select["psnr"].update(items), select["mse"].update(items), strict=True)]
    rows_mul = [{**a, **b} for a, b in zip(multiply["psnr"].update(items), multiply["mse"].update(items), strict=True)]
    for item, row, row_mul in zip(items, rows, rows_mul, strict=True):
        x, y = tensors(item)
        m = torch.from_numpy(item.sample.mask)
        assert close(row["psnr_whole"], peak_signal_noise_ratio(x, y, data_range=1.0))
        assert close(row["mse_whole"], mean_squared_error(x.flatten(), y.flatten()))
        for region, sel in (("background", ~m), ("edit", m)):
            xs, ys = x[0][:, sel], y[0][:, sel]  # only the region's pixels
            assert close(row[f"psnr_{region}"], peak_signal_noise_ratio(xs, ys, data_range=1.0))
            assert close(row[f"mse_{region}"], mean_squared_error(xs.flatten(), ys.flatten()))
            w = sel.float()
            assert close(row_mul[f"psnr_{region}"], peak_signal_noise_ratio(x * w, y * w, data_range=1.0))
            assert close(row_mul[f"mse_{region}"], mean_squared_error((x * w).flatten(), (y * w).flatten()))
        assert row["psnr_background"] != row_mul["psnr_background"]  # the two protocols really differ


def test_ssim_matches_torchmetrics_and_scikit_image_interior():
    """SSIM = torchmetrics' definition, computed in float32 like torchmetrics' (and PIE-Bench's) call.

    Why not 1e-5 relative everywhere: the local variance E[x²] − E[x]² cancels about five digits in smooth regions,
    so float32 SSIM carries ~1e-6 absolute error (measured on 512² photos: torchmetrics' float32 call up to 2.4e-5
    relative off its float64 value, the separable path up to 5e-6). Against the float64 value we ask 1e-5 relative
    or 1e-5 absolute (SSIM lies in [−1, 1]; an edit region's SSIM can be ~0.09); against torchmetrics' own float32
    call 1e-4. ``backend: torchmetrics`` reproduces that call exactly (==)."""
    from skimage.metrics import structural_similarity

    items = photo_items(3, sizes=[(96, 96), (112, 80)])
    sel = build("ssim", region=["whole", "background", "edit"])
    mul = build("ssim", region=["whole", "background", "edit"], mode="multiply")
    tm_backend = build("ssim", region=["whole", "edit"], mode="multiply", backend="torchmetrics")
    for item, row, row_mul, row_tm in zip(
        items, sel.update(items), mul.update(items), tm_backend.update(items), strict=True
    ):
        x, y = tensors(item)
        m = torch.from_numpy(item.sample.mask)
        for region, w in (("whole", torch.ones_like(m)), ("background", ~m), ("edit", m)):
            exact = structural_similarity_index_measure((x * w).double(), (y * w).double(), data_range=1.0)
            assert close(row_mul[f"ssim_{region}"], exact, abs_=1e-5)
            assert close(
                row_mul[f"ssim_{region}"], structural_similarity_index_measure(x * w, y * w, data_range=1.0), 1e-4
            )
        assert row["ssim_whole"] == row_mul["ssim_whole"]
        assert row_tm["ssim_whole"] == float(structural_similarity_index_measure(x, y, data_range=1.0))
        assert row_tm["ssim_edit"] == float(structural_similarity_index_measure(x * m, y * m, data_range=1.0))
        # select: the SSIM map averaged over the region; torchmetrics' float64 map, and scikit-image's (Gaussian σ 1.5,
        # population covariance = Wang et al.) whose border padding differs, so it agrees only 5+ pixels inside —
        # where the edit ellipse lies
        _, map64 = structural_similarity_index_measure(x.double(), y.double(), data_range=1.0, return_full_image=True)
        for region, sel_mask in (("background", ~m), ("edit", m)):
            assert close(row[f"ssim_{region}"], map64[0].mean(0)[sel_mask].mean(), abs_=1e-5)
        _, full = structural_similarity(
            x[0].permute(1, 2, 0).numpy().astype(np.float64),
            y[0].permute(1, 2, 0).numpy().astype(np.float64),
            data_range=1.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            full=True,
        )
        inner = np.zeros_like(item.sample.mask)
        inner[5:-5, 5:-5] = True
        assert item.sample.mask[~inner].sum() == 0
        assert close(row["ssim_edit"], full.mean(axis=-1)[item.sample.mask].mean(), abs_=1e-5)


def test_empty_region_is_nan_and_reference_target():
    items = photo_items(2)
    items[0].sample.mask[:] = False  # nothing to edit: the edit region is undefined
    items[1].sample.target_image = None  # no reference edit: no value against it
    rows = build("psnr", region=["whole", "edit"]).update(items)
    assert math.isnan(rows[0]["psnr_edit"]) and not math.isnan(rows[0]["psnr_whole"])
    vs_target = build("psnr", region="whole", reference="target").update(items)
    x = to_unit(items[0].output.image)[None]
    t = to_unit(items[0].sample.target_image)[None]
    assert close(vs_target[0]["psnr_whole_vs_target"], peak_signal_noise_ratio(x, t, data_range=1.0))
    assert vs_target[1] == {}


def test_resolution_and_resample_are_explicit():
    items = photo_items(2)
    items[0].output.image = items[0].output.image.resize((128, 128))  # a method that returns another size
    row = build("mse", region="whole", resolution=64, resample="bilinear").update(items)[0]
    x, y = tensors(items[0])
    ref = mean_squared_error(
        to_unit(items[0].output.image.resize((64, 64), 2)).flatten(),  # PIL BILINEAR = 2
        to_unit(items[0].sample.image.resize((64, 64), 2)).flatten(),
    )
    assert close(row["mse_whole"], ref)


# --- mask IoU ----------------------------------------------------------------------------------------------------


def test_mask_iou_family_matches_torchmetrics():
    items = photo_items(4, sizes=[(96, 96), (80, 64)])
    items[1].output.mask = np.asarray(items[1].output.mask)[::2, ::2]  # a low-resolution prediction
    binary = build("mask_iou")
    soft = build("mask_iou", source="soft", threshold=0.7, resample="bilinear")
    for item, row, row_soft in zip(items, binary.update(items), soft.update(items), strict=True):
        gt = torch.from_numpy(item.sample.mask).long()
        pred = torch.from_numpy(mask_at(item.output.mask, item.sample.image.size)).long()
        assert close(row["iou"], binary_jaccard_index(pred, gt))
        assert close(row["precision"], binary_precision(pred, gt))
        assert close(row["recall"], binary_recall(pred, gt))
        assert close(row["f1"], binary_f1_score(pred, gt))
        from PIL import Image

        up = Image.fromarray(item.output.soft_mask, mode="F").resize(item.sample.image.size, Image.Resampling.BILINEAR)
        soft_pred = torch.from_numpy(np.asarray(up) > 0.7).long()
        assert close(row_soft["iou"], binary_jaccard_index(soft_pred, gt))
        assert 0 < row_soft["iou"] < 1


# --- LPIPS -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_lpips_matches_lpips_package_and_torchmetrics(net, weights, monkeypatch):
    import lpips
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    items = photo_items(3)
    ours = build(
        "lpips", net=net, region=["whole", "background", "edit"], backbone_weights=str(weights.lpips_backbone(net))
    )
    ours_mul = build(
        "lpips", net=net, region=["background"], mode="multiply", backbone_weights=str(weights.lpips_backbone(net))
    )
    rows, rows_mul = ours.update(items), ours_mul.update(items)
    # the references load the same backbone file through their own torchvision code path
    monkeypatch.setenv("TORCH_HOME", str(weights.torch_home(net)))
    with torch.no_grad():
        package = lpips.LPIPS(net=net, pnet_rand=False, verbose=False).eval()
        package_spatial = lpips.LPIPS(net=net, pnet_rand=False, spatial=True, verbose=False).eval()
        tm = LearnedPerceptualImagePatchSimilarity(net_type=net)
        for item, row, row_mul in zip(items, rows, rows_mul, strict=True):
            x, y = tensors(item)
            assert close(row["lpips_whole"], package(x * 2 - 1, y * 2 - 1))
            assert close(row["lpips_whole"], tm(x * 2 - 1, y * 2 - 1))  # PIE-Bench's call
            w = torch.from_numpy(~item.sample.mask).float()
            assert close(row_mul["lpips_background"], tm(x * w * 2 - 1, y * w * 2 - 1))
            spatial = package_spatial(x * 2 - 1, y * 2 - 1)[0, 0]
            assert close(row["lpips_edit"], spatial[torch.from_numpy(item.sample.mask)].mean())
            assert close(row["lpips_background"], spatial[torch.from_numpy(~item.sample.mask)].mean())


# --- CLIPScore ---------------------------------------------------------------------------------------------------


def test_clip_score_matches_open_clip_by_hand(weights):
    import open_clip

    items = photo_items(3, sizes=[(96, 96), (120, 80)])
    items[2].sample.target_prompt = "a [photo] of " + "a very long and detailed description " * 15
    common = dict(model=open_clip_name(weights), pretrained=str(weights.clip), model_config=str(weights.clip_config))
    scaled = build("clip_score", region=["whole", "edit"], scale=100, strip_brackets=True, **common)
    hessel = build("clip_score", region=["whole"], scale=2.5, strip_brackets=True, **common)
    raw = build("clip_score", region=["whole", "edit"], scale="raw", edit_mode="crop", strip_brackets=True, **common)
    src = build("clip_score", image="source", region="whole", scale="raw", **common)
    rows_scaled, rows_hessel, rows_raw, rows_src = (m.update(items) for m in (scaled, hessel, raw, src))

    model, _, preprocess = open_clip.create_model_and_transforms(common["model"], pretrained=common["pretrained"])
    model.eval()
    tokenizer = open_clip.get_tokenizer(common["model"])

    def cos(image, text):
        with torch.no_grad():
            a = model.encode_image(preprocess(image)[None])[0]
            b = model.encode_text(tokenizer([text]))[0]
        return float(a @ b / (a.norm() * b.norm()))

    for item, r100, r25, rraw, rsrc in zip(items, rows_scaled, rows_hessel, rows_raw, rows_src, strict=True):
        prompt = item.sample.target_prompt.replace("[", "").replace("]", "")
        c_whole = cos(item.output.image, prompt)
        m = item.sample.mask
        masked = np.uint8(np.asarray(item.output.image) * m[..., None])
        from PIL import Image

        c_edit = cos(Image.fromarray(masked), prompt)
        rows_, cols_ = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        c_crop = cos(item.output.image.crop((cols_[0], rows_[0], cols_[-1] + 1, rows_[-1] + 1)), prompt)
        assert close(r100["clip_score_whole"], 100 * max(c_whole, 0), abs_=1e-5)
        assert close(r100["clip_score_edit"], 100 * max(c_edit, 0), abs_=1e-5)
        assert close(r25["clip_score_whole"], 2.5 * max(c_whole, 0), abs_=1e-6)
        # raw cosines near 0 are compared absolutely: 1e-5 relative of a value ~1e-2 is below float32 batching noise
        assert close(rraw["clip_score_whole"], c_whole, abs_=1e-6)
        assert close(rraw["clip_score_edit"], c_crop, abs_=1e-6)
        assert close(rsrc["clip_score_source_whole"], cos(item.sample.image, item.sample.source_prompt), abs_=1e-6)
    # the long prompt is truncated to 77 tokens (76 + end token) and counted
    assert [r["clip_prompt_truncated"] for r in rows_scaled] == [0.0, 0.0, 1.0]
    assert scaled.truncated == 1 and scaled.prompts == 3
    assert "clip_source_prompt_truncated" in rows_src[0]


def open_clip_name(weights) -> str:
    import open_clip

    from benchmark.metrics.random_weights import TINY_CLIP

    open_clip.add_model_config(str(weights.clip_config))
    return TINY_CLIP


# --- FID / KID ---------------------------------------------------------------------------------------------------


def crops(n: int, seed: int, size: int = 48) -> list:
    """n distinct 48×48 crops of the photographs (enough samples for a full-rank 64-d covariance)."""
    rng = np.random.default_rng(seed)
    pics = [np.asarray(photo(p, (160, 160))) for p in ("astronaut", "coffee", "chelsea", "rocket")]
    out = []
    from PIL import Image

    for i in range(n):
        pic = pics[i % len(pics)]
        y0, x0 = rng.integers(0, 160 - size, 2)
        out.append(Image.fromarray(pic[y0 : y0 + size, x0 : x0 + size]))
    return out


def fid_items(real: list, fake: list) -> list:
    from benchmark.metrics.base import ScoreItem
    from benchmark.types import EditOutput, EditSample

    return [
        ScoreItem(EditSample(id=str(i), image=r, mask=None), EditOutput(image=f))
        for i, (r, f) in enumerate(zip(real, fake, strict=True))
    ]


def test_frechet_distance_and_kid_match_scipy_and_numpy(weights):
    """64-d stem features of 72 + 72 images: full-rank covariances, so scipy's sqrtm is well defined."""
    from scipy import linalg

    real, fake = crops(72, seed=1), crops(72, seed=2)
    fake = [im.transpose(0) for im in fake]  # mirrored: a shifted distribution
    metric = build("fid", feature=64, weights=str(weights.inception), kid_subset_size=72, kid_subsets=1)
    metric.reset()
    items = fid_items(real, fake)
    for s in range(0, len(items), 36):
        metric.update(items[s : s + 36])
    values = metric.compute()
    # the very features the metric accumulated (KID keeps them), in input order
    f_real = torch.cat(metric.kid.real_features).numpy()
    f_fake = torch.cat(metric.kid.fake_features).numpy()
    assert f_real.shape == (72, 64)
    mu1, mu2 = f_real.mean(0), f_fake.mean(0)
    s1, s2 = np.cov(f_real, rowvar=False), np.cov(f_fake, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    fid = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert fid > 1e-3
    assert close(values["fid"], fid, rel=1e-5)

    # KID with one subset of all samples = the unbiased polynomial-kernel MMD² (degree 3, gamma 1/d, coef 1)
    def kernel(a, b):
        return (a @ b.T / a.shape[1] + 1) ** 3

    n = len(f_real)
    k_xx, k_yy, k_xy = kernel(f_real, f_real), kernel(f_fake, f_fake), kernel(f_real, f_fake)
    mmd = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1)) + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    mmd -= 2 * k_xy.mean()
    assert close(values["kid_mean"], mmd)


def test_fid_2048_matches_torchmetrics_module_on_uint8_images(weights):
    from torchmetrics.image.fid import FrechetInceptionDistance

    from benchmark.metrics.fid import to_uint8

    real, fake = crops(4, seed=3, size=64), crops(4, seed=4, size=64)
    metric = build("fid", weights=str(weights.inception), kid=False, batch_size=3)
    metric.update(fid_items(real, fake))
    ours = metric.compute()["fid"]
    tm = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights.inception), antialias=False)
    tm.update(torch.stack([to_uint8(im) for im in real]), real=True)
    tm.update(torch.stack([to_uint8(im) for im in fake]), real=False)
    # same network and maths; features from different batch compositions differ in the last float32 bits, and FID
    # from 4 samples sits on a rank-3 covariance, which amplifies that: 1e-4
    assert close(ours, float(tm.compute()), rel=1e-4)


# --- structure distance ------------------------------------------------------------------------------------------


def splice_structure(
    net, src: torch.Tensor, edited: torch.Tensor, pixel_scale: float, layer: int, size: int = 224
) -> float:
    """Per-image reference in Splice's / PIE-Bench's way: full forward with a hook, keys (heads × dims) per token."""
    import torchvision.transforms as T

    transform = T.Compose([T.Resize(size, max_size=480), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def self_sim(img: torch.Tensor) -> torch.Tensor:
        out = []
        handle = net.blocks[layer].attn.qkv.register_forward_hook(lambda m, i, o: out.append(o))
        with torch.no_grad():
            net(transform(img * pixel_scale)[None])
        handle.remove()
        qkv = out[0][0]  # tokens × 3C
        t = qkv.shape[0]
        heads = net.blocks[layer].attn.num_heads
        keys = qkv.reshape(t, 3, heads, -1).permute(1, 2, 0, 3)[1]  # heads × tokens × d
        x = keys.transpose(0, 1).reshape(t, -1)
        norm = x.norm(dim=1, keepdim=True)
        return (x @ x.T) / (norm @ norm.T).clamp(min=1e-8)

    return float(torch.nn.functional.mse_loss(self_sim(edited), self_sim(src)))


def test_structure_distance_matches_splice_reference(weights):
    import timm

    from benchmark.metrics.networks import load_state_dict_file

    items = photo_items(3, sizes=[(96, 96), (96, 64)])  # square and non-square (resize with max_size)
    metric = build(
        "structure_distance",
        region=["whole", "background"],
        weights=str(weights.vit_tiny),
        model_kwargs=TINY_VIT,
        layer=1,
        pixel_scale=255,
    )
    rows = metric.update(items)
    net = timm.create_model("vit_base_patch8_224", num_classes=0, dynamic_img_size=True, **TINY_VIT).eval()
    net.load_state_dict(load_state_dict_file(weights.vit_tiny))
    for item, row in zip(items, rows, strict=True):
        x, y = tensors(item)
        assert close(row["structure_distance_whole"], splice_structure(net, y[0], x[0], 255, 1))
        w = torch.from_numpy(~item.sample.mask).float()
        assert close(row["structure_distance_background"], splice_structure(net, y[0] * w, x[0] * w, 255, 1))


def test_structure_distance_real_vit_b8_architecture(weights):
    """The real DINO ViT-B/8 architecture (random weights, loaded from a file like DINO's): layer 11 keys.

    Inputs are resized to 112 instead of 224 (197 instead of 785 tokens) to keep the test at a few seconds on a
    CPU; the 224 rule itself is checked with the small ViT above."""
    import timm

    from benchmark.metrics.networks import load_state_dict_file

    items = photo_items(2, size=(64, 64))
    metric = build("structure_distance", weights=str(weights.vit_b8), layer=11, pixel_scale=1.0, resize=112)
    rows = metric.update(items)
    net = timm.create_model("vit_base_patch8_224", num_classes=0, dynamic_img_size=True).eval()
    net.load_state_dict(load_state_dict_file(weights.vit_b8))
    assert len(net.blocks) == 12 and net.blocks[11].attn.num_heads == 12
    for item, row in zip(items, rows, strict=True):
        x, y = tensors(item)
        assert row["structure_distance_whole"] > 0
        assert close(row["structure_distance_whole"], splice_structure(net, y[0], x[0], 1.0, 11, size=112))
