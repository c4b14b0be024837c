"""draw_instances: the overlay picture the CLI writes and the node publishes."""
import numpy as np
import pytest

from ovsam_model.predictor import InstancePrediction
from ovsam_model.prompts import PromptSpec
from ovsam_model.visualization import BACKGROUND_MARKER, FOREGROUND_MARKER, draw_instances, instance_colour

HEIGHT, WIDTH = 120, 160


def square_prediction(x0: int, y0: int, x1: int, y1: int, label: str = "red square") -> InstancePrediction:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return InstancePrediction("p", mask, 0.9, (x0, y0, x1, y1), 0, label, 0.8, [label], [0.8], [0])


def test_masks_are_tinted_and_the_rest_is_untouched() -> None:
    image = np.full((HEIGHT, WIDTH, 3), 100, dtype=np.uint8)
    prediction = square_prediction(60, 60, 120, 100)
    overlay = draw_instances(image, [prediction], alpha=0.5)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    assert (image == 100).all()  # the input is not drawn on
    colour = np.array(instance_colour(0))
    inside = overlay[80, 90].astype(int)
    np.testing.assert_allclose(inside, np.rint(0.5 * 100 + 0.5 * colour), atol=1)
    assert (overlay[:40, :40] == 100).all()  # far from the mask, its outline and its caption
    assert (overlay[60, 60:120] == colour).all()  # the outline on the mask's top edge
    # The caption sits above the box, on a filled label background.
    assert (overlay[45:59, 60:100] != 100).any()


def test_alpha_zero_leaves_the_mask_interior_as_is() -> None:
    image = np.full((HEIGHT, WIDTH, 3), 100, dtype=np.uint8)
    overlay = draw_instances(image, [square_prediction(40, 40, 120, 110)], alpha=0.0)
    assert (overlay[75, 80] == 100).all()


def test_prompt_markers() -> None:
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    prompts = [PromptSpec("a", points=[[20, 20], [140, 20]], point_labels=[1, 0]),
               PromptSpec("b", box=[30, 60, 100, 110])]
    overlay = draw_instances(image, [], prompts=prompts)
    assert tuple(overlay[20, 20]) == FOREGROUND_MARKER
    assert tuple(overlay[20, 140]) == BACKGROUND_MARKER
    assert (overlay[60, 40:90] == 255).all()  # the box's top edge, white
    assert (overlay[80, 60] == 0).all()  # inside the box prompt nothing is drawn


def test_grey_input_and_empty_masks() -> None:
    empty = InstancePrediction("e", np.zeros((HEIGHT, WIDTH), bool), 0.0, None, -1, "", 0.0)
    overlay = draw_instances(np.full((HEIGHT, WIDTH), 50, dtype=np.uint8), [empty])
    assert overlay.shape == (HEIGHT, WIDTH, 3) and (overlay == 50).all()


def test_mismatched_masks_and_bad_alpha_are_refused() -> None:
    image = np.zeros((HEIGHT + 1, WIDTH, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="mask"):
        draw_instances(image, [square_prediction(0, 0, 10, 10)])
    with pytest.raises(ValueError, match="alpha"):
        draw_instances(image[:HEIGHT], [], alpha=1.5)
