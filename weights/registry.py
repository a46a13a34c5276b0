"""Every pretrained file photodrag uses: where it comes from, how big it is, how to check it.

`sha256`/`size` are filled in where they are published or were measured from the
file.  No hash or size is published for any generator pickle (NVIDIA's, Self-Distilled
StyleGAN's): the sha256 and size of the first verified download are recorded locally
(trust on first use) and every later download and `weights verify` is checked against them.
`approx_mb` says what to expect before that: for the generators, G + G_ema + D in float32
as the architecture gives it (weights/sizes.py's pickle_mb of the entry's init kwargs).

The DragGAN zoo is the list in XingangPan/DragGAN `scripts/download_models.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from common.errors import UsageError
from weights.sizes import pickle_mb

GENERATOR = "generator"
BACKBONE = "lpips-backbone"
DLIB = "dlib-model"

_NVIDIA_NC = "NVIDIA Source Code License-NC (non-commercial research use)"
# self-distilled-stylegan/self-distilled-internet-photos README "Licenses" (LICENSE: CC Attribution 4.0)
_SELF_DISTILLED_LICENCE = (
    'CC-BY-4.0 (Self-Distilled StyleGAN: "If you use the data or models, please give appropriate '
    'credit by citing our paper")'
)
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
_SELF_DISTILLED = "https://storage.googleapis.com/self-distilled-stylegan/"
_NVIDIA_TF = "http://d36zk2xti64re0.cloudfront.net/stylegan2/networks/"

# how each generator file is laid out (weights/checkpoint.py reads all three)
ADA = "stylegan2-ada"  # stylegan2-ada-pytorch pickle (G, D, G_ema, ...)
NGC = "ngc"  # NVIDIA NGC pickle of the StyleGAN3 codebase (networks_stylegan2)
TENSORFLOW = "tensorflow"  # NVIDIA's original StyleGAN2 TensorFlow pickle (G, D, Gs)
LAYOUTS = {
    ADA: "stylegan2-ada-pytorch pickle",
    NGC: "NGC pickle, StyleGAN3 codebase",
    TENSORFLOW: "NVIDIA TensorFlow pickle",
}
FACES = "faces"  # the subject presets and identity checks need


def _ffhq_kwargs(res: int, channel_base: int) -> dict:
    """Init kwargs of a StyleGAN2 generator with 512-d z and w and 8 mapping layers (NVIDIA's FFHQ
    configs; for the other files only resolution, w_dim and RGB output are checked)."""
    return dict(
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=res,
        img_channels=3,
        mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=channel_base, channel_max=512, num_fp16_res=4, conv_clamp=256),
    )


# LSUN Car was trained as 512x384 pictures centred on a black 512x512 canvas (NVIDIA's
# dataset_tool.py create_lsun_wide); the generator draws that square, which DragGAN shows as is.
CAR_LETTERBOX = (
    "draws 512x384 pictures letterboxed in a 512x512 frame (black bars: rows 0-63 and 448-511), "
    "as NVIDIA trained it; photodrag drags the square frame as DragGAN does"
)


@dataclass(frozen=True)
class WeightEntry:
    name: str
    kind: str
    filename: str
    description: str
    licence: str
    url: Optional[str] = None
    size: Optional[int] = None
    approx_mb: Optional[int] = None  # where no exact size is published: what a user should expect
    sha256: Optional[str] = None
    # generators: the reference config a file must fit
    init_kwargs: Optional[dict] = field(default=None, hash=False, compare=False)
    # files shipped inside a pip package instead of downloaded
    package: Optional[str] = None
    package_path: Optional[str] = None
    # generators: the file's layout (LAYOUTS), what it draws, and a remark on its pictures
    layout: Optional[str] = None
    subject: Optional[str] = None
    note: Optional[str] = None

    @property
    def resolution(self) -> Optional[int]:
        return self.init_kwargs["img_resolution"] if self.init_kwargs else None


def _zoo(
    name: str, filename: str, url: str, what: str, res: int, layout: str, licence: str, note: Optional[str]
) -> WeightEntry:
    """One generator of DragGAN's model list (no published size or hash: recorded on first download)."""
    source = "Self-Distilled StyleGAN, Google" if layout == ADA else "NVIDIA"
    kwargs = _ffhq_kwargs(res, 32768)
    mb = pickle_mb(kwargs)
    return WeightEntry(
        name,
        GENERATOR,
        filename,
        f"StyleGAN2 {what} {res}x{res} ({source}, {LAYOUTS[layout]}; DragGAN's model list), about {mb} MB",
        licence,
        url=url,
        init_kwargs=kwargs,
        approx_mb=mb,
        layout=layout,
        subject=what,
        note=note,
    )


def _ffhq(name: str, filename: str, what: str, url: str, res: int, channel_base: int, layout: str) -> WeightEntry:
    """One of NVIDIA's FFHQ generators; its expected size comes from its architecture (weights/sizes.py)."""
    kwargs = _ffhq_kwargs(res, channel_base)
    mb = pickle_mb(kwargs)
    return WeightEntry(
        name,
        GENERATOR,
        filename,
        f"{what}, about {mb} MB",
        _NVIDIA_NC,
        url=url,
        init_kwargs=kwargs,
        approx_mb=mb,
        layout=layout,
        subject=FACES,
    )


ENTRIES = (
    _ffhq(
        "ffhq-256",
        "stylegan2-ffhq-256x256.pkl",
        "StyleGAN2 FFHQ 256x256 (NVIDIA NGC, StyleGAN3-codebase pickle)",
        _NGC + "stylegan2-ffhq-256x256.pkl",
        256,
        16384,
        NGC,
    ),
    _ffhq(
        "ffhq-512",
        "stylegan2-ffhq-512x512.pkl",
        "StyleGAN2 FFHQ 512x512 (NVIDIA NGC, StyleGAN3-codebase pickle, as used by DragGAN)",
        _NGC + "stylegan2-ffhq-512x512.pkl",
        512,
        32768,
        NGC,
    ),
    _ffhq(
        "ffhq-1024",
        "ffhq.pkl",
        "StyleGAN2-ADA FFHQ 1024x1024 (NVIDIA stylegan2-ada-pytorch pretrained)",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
        1024,
        32768,
        ADA,
    ),
    *(
        _zoo(name, file, url, what, res, layout, licence, note)
        for name, file, url, what, res, layout, licence, note in (
            (
                "lions-512",
                "stylegan2_lions_512_pytorch.pkl",
                _SELF_DISTILLED + "lions_512_pytorch.pkl",
                "lions",
                512,
                ADA,
                _SELF_DISTILLED_LICENCE,
                None,
            ),
            (
                "dogs-1024",
                "stylegan2_dogs_1024_pytorch.pkl",
                _SELF_DISTILLED + "dogs_1024_pytorch.pkl",
                "dogs",
                1024,
                ADA,
                _SELF_DISTILLED_LICENCE,
                None,
            ),
            (
                "horses-256",
                "stylegan2_horses_256_pytorch.pkl",
                _SELF_DISTILLED + "horses_256_pytorch.pkl",
                "horses",
                256,
                ADA,
                _SELF_DISTILLED_LICENCE,
                None,
            ),
            (
                "elephants-512",
                "stylegan2_elephants_512_pytorch.pkl",
                _SELF_DISTILLED + "elephants_512_pytorch.pkl",
                "elephants",
                512,
                ADA,
                _SELF_DISTILLED_LICENCE,
                None,
            ),
            (
                "afhqcat-512",
                "stylegan2-afhqcat-512x512.pkl",
                _NGC + "stylegan2-afhqcat-512x512.pkl",
                "cats (AFHQ)",
                512,
                NGC,
                _NVIDIA_NC,
                None,
            ),
            (
                "car-config-f",
                "stylegan2-car-config-f.pkl",
                _NVIDIA_TF + "stylegan2-car-config-f.pkl",
                "cars (LSUN Car)",
                512,
                TENSORFLOW,
                _NVIDIA_NC,
                CAR_LETTERBOX,
            ),
            (
                "cat-config-f",
                "stylegan2-cat-config-f.pkl",
                _NVIDIA_TF + "stylegan2-cat-config-f.pkl",
                "cats (LSUN Cat)",
                256,
                TENSORFLOW,
                _NVIDIA_NC,
                None,
            ),
        )
    ),
    WeightEntry(
        "lpips-alex",
        BACKBONE,
        "alexnet-owt-7be5be79.pth",
        "torchvision AlexNet (ImageNet) - the backbone of LPIPS(alex)",
        "BSD-3-Clause (torchvision)",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        size=244408911,
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
    ),
    WeightEntry(
        "lpips-vgg16",
        BACKBONE,
        "vgg16-397923af.pth",
        "torchvision VGG16 (ImageNet) - the backbone of LPIPS(vgg)",
        "BSD-3-Clause (torchvision)",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        size=553433881,
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    ),
    WeightEntry(
        "dlib-landmarks-68",
        DLIB,
        "shape_predictor_68_face_landmarks.dat",
        "dlib 68-point face landmark predictor (iBUG 300-W), shipped by face-recognition-models",
        "iBUG 300-W terms: no commercial use",
        size=99693937,
        sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        package="face_recognition_models",
        package_path="models/shape_predictor_68_face_landmarks.dat",
    ),
    WeightEntry(
        "dlib-face-recognition",
        DLIB,
        "dlib_face_recognition_resnet_model_v1.dat",
        "dlib face recognition ResNet (128-d descriptors), shipped by face-recognition-models",
        "CC0 1.0 (public domain)",
        size=22466066,
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        package="face_recognition_models",
        package_path="models/dlib_face_recognition_resnet_model_v1.dat",
    ),
)

REGISTRY: Dict[str, WeightEntry] = {e.name: e for e in ENTRIES}


DEFAULT_MODEL = "ffhq-512"  # DragGAN's FFHQ model: what `edit` and `serve` use, and `align`'s default size
LANDMARKS = "dlib-landmarks-68"  # the 68-point predictor align needs
FACE_RECOGNITION = "dlib-face-recognition"  # the identity descriptor (warnings and summaries)
DEFAULT_SIZE = REGISTRY[DEFAULT_MODEL].resolution


def get_entry(name: str) -> WeightEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown weights name {name!r}; known: {', '.join(REGISTRY)}") from None
