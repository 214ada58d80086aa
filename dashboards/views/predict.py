"""Predict tab: upload a JPEG or PNG, see the seven probabilities, P(mel) against the
arm's operating points, and the Grad-CAM overlay. Above them, in a banner: whether the arm
was trained on synthetic data, and whether the image is out of distribution for it."""
from __future__ import annotations

import pandas as pd
import panel as pn

from core.inference import gradcam_overlay, predict_and_screen
from core.labels import CLASS_INDEX, CLASS_NAMES, CLASSES, MEL
from core.predict import WARNING_TITLES, describe, mel_flags
from core.results import CHECKPOINT
from dashboards.cams import trained_model
from dashboards.figures import probability_figure
from dashboards.state import Dashboard
from dashboards.uploads import MAX_UPLOAD_MB, UploadError, decode_upload
from dashboards.views.common import NOT_A_DEVICE, figure, image, note, table

SIDE = 260  # pixels of the shown image and overlay


def flags_text(trained, p_mel: float) -> str:
    flags = mel_flags(trained, p_mel)
    if not flags:
        return f"P(mel) = **{p_mel:.3f}**. This arm has no operating points (no metrics.json)."
    lines = [f"P(mel) = **{p_mel:.3f}** against the thresholds chosen on validation:", ""]
    lines += [f"- {'**flagged**' if f['flagged'] else 'not flagged'} at the recall >= {f['target_recall']:.2f} "
              f"point, t = {f['threshold']:.3f}" for f in flags]
    return "\n".join(lines)


BANNERS = {"synthetic_training_data": ("warning", "synthetic-banner"), "out_of_distribution": ("danger", "ood-warning")}


def trust_banners(described: dict) -> list[pn.pane.Alert]:
    """core.predict's warnings (the synthetic-data banner, the out-of-distribution warning), above the prediction."""
    return [pn.pane.Alert(f"**{WARNING_TITLES[kind]}** {text}", alert_type=BANNERS[kind][0],
                          css_classes=[BANNERS[kind][1]]) for kind, text in described["warnings"].items()]


def probabilities(probs, calibrated_probs=None, temperature: float | None = None) -> pd.DataFrame:
    """The seven probabilities; with a temperature, the calibrated ones beside them (labelled with T)."""
    table = pd.DataFrame({"class": CLASSES, "name": [CLASS_NAMES[c] for c in CLASSES],
                          "probability": [float(p) for p in probs]})
    if calibrated_probs is not None:
        table[f"calibrated (T = {temperature:.2f})"] = [float(p) for p in calibrated_probs]
    return table


def predict_view(dash: Dashboard) -> pn.Column:
    arm = pn.widgets.Select(name="Arm", options=[], width=240, css_classes=["predict-arm"])
    upload = pn.widgets.FileDropper(name="Image", max_file_size=f"{MAX_UPLOAD_MB}MB", multiple=False,
                                    previews=[], width=420, css_classes=["upload"])
    cam_class = pn.widgets.Select(name="Grad-CAM for", options=["predicted class", *CLASSES], width=200)
    message = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["upload-error"])
    result = pn.Column(css_classes=["prediction"])
    uploaded = {}  # the last valid upload: name, image

    def sync_arms(*_):
        sweep = dash.sweep
        ready = [a for a in (sweep.finished_arms() if sweep else []) if (sweep.arm_dir(a) / CHECKPOINT).is_file()]
        arm.options = ready
        if arm.value not in ready:
            arm.value = dash.arm if dash.arm in ready else (ready or [None])[0]

    def fail(text: str):
        message.param.update(object=text, visible=True)
        result[:] = []

    def on_upload(*_):
        if not upload.value:
            return
        name, data = list(upload.value.items())[-1]
        try:
            uploaded.update(name=name, image=decode_upload(name, data))
        except UploadError as e:
            uploaded.clear()
            fail(str(e))
            return
        show()

    def show(*_):
        if not uploaded:
            return
        if arm.value is None:
            fail("No finished arm with a checkpoint (best.pt) to predict with.")
            return
        try:
            trained = trained_model(dash.sweep.arm_dir(arm.value))
        except (FileNotFoundError, ValueError) as e:
            fail(f"Cannot load arm {arm.value}: {e}")
            return
        message.visible = False
        probs, screens = predict_and_screen(trained, [uploaded["image"]])
        probs = probs[0]
        target = None if cam_class.value == "predicted class" else CLASS_INDEX[cam_class.value]
        cam_for = CLASSES[int(probs.argmax())] if target is None else cam_class.value
        described = describe(trained, uploaded["name"], probs, screens and screens[0])
        result[:] = [
            *trust_banners(described),
            pn.Row(
                pn.Column(pn.pane.Markdown(f"**{uploaded['name']}**"), image(uploaded["image"], width=SIDE)),
                pn.Column(pn.pane.Markdown(f"**Grad-CAM for `{cam_for}`**"),
                          image(gradcam_overlay(trained, uploaded["image"], target), width=SIDE,
                                css_classes=["gradcam"])),
                pn.Column(pn.pane.Markdown(f"**Predicted: `{CLASSES[int(probs.argmax())]}`** (arm `{arm.value}`)"),
                          pn.pane.Markdown(flags_text(trained, float(probs[MEL])), width=420)),
            ),
            pn.Row(table(probabilities(probs, trained.calibrated(probs), trained.temperature),
                         css_classes=["probabilities"]),
                   figure(probability_figure(probs, "class probabilities"))),
        ]

    dash.param.watch(sync_arms, "version")
    sync_arms()
    upload.param.watch(on_upload, "value")
    arm.param.watch(show, "value")
    cam_class.param.watch(show, "value")
    return pn.Column(
        note(NOT_A_DEVICE, "warning"),
        pn.pane.Markdown(f"### Predict\nDrop a JPEG or PNG (at most {MAX_UPLOAD_MB} MB) on the box, or click it "
                         "to browse. The image goes through the arm's own evaluation pipeline."),
        pn.Row(upload, arm, cam_class),
        message,
        result,
    )
