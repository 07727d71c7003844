"""The monitor's text colours keep WCAG AA contrast (4.5:1) on its background, in light and in dark mode."""

from __future__ import annotations

import math
import re

import pytest

from autopilot_ops.airflow.webapp.rendering import environment

TEXT_COLOURS = ("--fg", "--muted", "--link", "--error", "--warn")


def srgb(colour: str) -> tuple[float, float, float]:
    """Linear sRGB of ``#rgb``, ``#rrggbb`` or ``oklch(L C H)`` (Björn Ottosson's OKLab matrices)."""
    if colour.startswith("#"):
        digits = colour[1:] if len(colour) == 7 else "".join(d * 2 for d in colour[1:])
        channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        return tuple(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)  # type: ignore[return-value]
    lightness, chroma, hue = (float(x) for x in re.fullmatch(r"oklch\(([\d.]+) ([\d.]+) ([\d.]+)\)", colour).groups())
    a, b = chroma * math.cos(math.radians(hue)), chroma * math.sin(math.radians(hue))
    l_, m_, s_ = (lightness + 0.3963377774 * a + 0.2158037573 * b) ** 3, \
        (lightness - 0.1055613458 * a - 0.0638541728 * b) ** 3, (lightness - 0.0894841775 * a - 1.2914855480 * b) ** 3
    rgb = (4.0767416621 * l_ - 3.3077115913 * m_ + 0.2309699292 * s_,
           -1.2684380046 * l_ + 2.6097574011 * m_ - 0.3413193965 * s_,
           -0.0041960863 * l_ - 0.7034186147 * m_ + 1.7076147010 * s_)
    return tuple(min(max(c, 0.0), 1.0) for c in rgb)  # type: ignore[return-value]


def contrast(one: str, other: str) -> float:
    lum = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in (srgb(one), srgb(other))]
    return (max(lum) + 0.05) / (min(lum) + 0.05)


def theme(selector: str) -> dict[str, str]:
    css = environment().get_template("_style.html").render()
    block = css[css.index(selector + " {"):]
    block = block[:block.index("}")]
    return dict(re.findall(r"(--[\w-]+): ([^;]+);", block))


def test_the_conversion_agrees_with_known_contrasts():
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("oklch(1 0 0)", "#000000") == pytest.approx(21, rel=1e-3)


@pytest.mark.parametrize("selector", [":root", ':root[data-theme="dark"]'])
def test_text_colours_keep_aa_contrast_on_the_background(selector):
    colours = theme(selector)
    for name in TEXT_COLOURS:
        assert contrast(colours[name], colours["--bg"]) >= 4.5, f"{selector} {name} {colours[name]}"
