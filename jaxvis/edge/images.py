"""Reading photos: any file Pillow opens, as ``[H, W, 3]`` float32 RGB 0..255, EXIF rotation applied."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxvis.errors import JaxvisError


def read_image(path: str, *, max_size: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """Read ``path`` as ``[H, W, 3]`` float32 RGB 0..255, EXIF orientation applied.

    Grayscale, palette, CMYK and 16-bit images are converted; transparency is flattened onto white.
    With ``max_size > 0`` the image is shrunk (Lanczos) so its longer side is at most ``max_size``.
    Returns the array and the file's own ``(width, height)`` after EXIF rotation.
    Raises JaxvisError for a missing, unreadable or non-image file.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            rgb = _to_rgb(im)
    except FileNotFoundError:
        raise JaxvisError(f'input {path} does not exist') from None
    except IsADirectoryError:
        raise JaxvisError(f'input {path} is a folder, not an image') from None
    except PermissionError:
        raise JaxvisError(f'input {path} cannot be read (permission denied)') from None
    except UnidentifiedImageError:
        raise JaxvisError(f'input {path} is not an image Pillow can read') from None
    except Image.DecompressionBombError as e:
        raise JaxvisError(f'input {path} is too large: {e}') from None
    except (OSError, SyntaxError, ValueError) as e:
        raise JaxvisError(f'cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}') \
            from None
    size = rgb.size
    if max_size and max(size) > max_size:
        scale = max_size / max(size)
        rgb = rgb.resize((max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), Image.LANCZOS)
    return np.asarray(rgb, np.float32), size


def _to_rgb(im):
    """Any Pillow image -> mode 'RGB' (alpha composited over white, 16-bit scaled to 8-bit)."""
    if im.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
        a = np.asarray(im, np.float64)
        top = 65535.0 if (im.mode.startswith('I;16') or a.max(initial=0) > 255) else 255.0
        im = Image.fromarray(np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8), 'L')
    has_alpha = im.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or 'transparency' in im.info
    if has_alpha:
        rgba = im.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert('RGB')
    return im.convert('RGB')


RESIZES = ('squash', 'center-crop')
CROP_PADDING = 32  # TF's EfficientNet(-Lite) evaluation: the centre crop is size / (size + 32) of the short side


def fit(rgb: np.ndarray, size: int, how: str = 'squash') -> np.ndarray:
    """``[H, W, 3]`` RGB 0..255 -> ``[size, size, 3]`` float32 RGB 0..255 (rounded to uint8 first), Pillow
    bicubic. 'squash': the whole photo resized, its aspect ratio lost (the reference run of
    scripts/efficientnet_reference.py); 'center-crop': the centre square of side
    ``size / (size + 32) * min(H, W)`` resized, as tensorflow/tpu's EfficientNet preprocessing evaluates.
    """
    if how not in RESIZES:
        raise JaxvisError(f'unknown resize {how!r}; use one of {", ".join(RESIZES)}')
    im = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), 'RGB')
    if how == 'center-crop':
        h, w = rgb.shape[:2]
        side = max(1, int(round(size / (size + CROP_PADDING) * min(h, w))))
        top, left = (h - side + 1) // 2, (w - side + 1) // 2
        im = im.crop((left, top, left + side, top + side))
    return np.asarray(im.resize((size, size), Image.BICUBIC), np.float32)
