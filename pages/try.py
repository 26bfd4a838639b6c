"""Try the models: upload images (or pick test images), every stored variant predicts, Grad-CAM explains."""

from collections import Counter

import altair as alt
import pandas as pd
import streamlit as st

from core.deploy import ensemble_predict, predict
from core.errors import UserError
from core.models import gradcam
from pages.common import current_dataset, dataset_root, load_predictions, results_token

st.title("Try the models")
dataset = current_dataset()
if not dataset:
    st.info("No results yet: train a model first (Train page or `python -m core run`).")
    st.stop()


@st.cache_data(show_spinner=False)
def models(dataset: str, token: str):
    problems: list[str] = []
    return *predict.stored_models(dataset, problems=problems), problems


@st.cache_data(show_spinner=False)
def ensembles(dataset: str, token: str):
    problems: list[str] = []
    return ensemble_predict.dataset_ensembles(dataset, problems=problems), problems


token = results_token()
lite_models, keras_models, problems = models(dataset, token)
stored_ensembles, ensemble_problems = ensembles(dataset, token)
for what, lines in (("run", problems), ("ensemble", ensemble_problems)):
    if lines:
        st.warning(f"{len(lines)} {what}(s) of {dataset} could not be read and are left out: " + "; ".join(lines))
if not lite_models and not keras_models:
    st.info(f"No stored model for {dataset} yet: train one, then `python -m core deploy RUN_DIR` writes its "
            "TFLite variants.")
    st.stop()

images: list[tuple[str, object]] = []
uploads = st.file_uploader("Upload images", accept_multiple_files=True,
                           help=f"JPEG, PNG, WebP, BMP, TIFF, GIF…, up to {predict.MAX_UPLOAD_BYTES // 2**20} MB each")
for upload in uploads or []:
    try:
        images.append((upload.name, predict.decode_upload(upload.name, upload.getvalue())))
    except UserError as exc:
        st.error(str(exc))
source = (keras_models or lite_models)[0]
root = dataset_root(str(source.run_dir))
stored = load_predictions(str(source.run_dir), token) if root is not None else pd.DataFrame()
if not stored.empty:
    picked = st.multiselect("…or pick test images of the dataset", stored["id"].tolist(), max_selections=4)
    for rel in picked:
        try:  # deleted or replaced since the run: the other images still go through
            images.append((rel, predict.read_test_image(root, rel)))
        except UserError as exc:
            st.warning(str(exc))
if not images:
    st.caption(f"{len(lite_models)} TFLite variants and {len(keras_models)} Keras models of {dataset} are ready.")
    st.stop()

preferred = ("tflite_int8_full", "tflite_float16", "tflite_float32", "qat_int8")
ordered = sorted(lite_models, key=lambda m: (preferred.index(m.variant) if m.variant in preferred else len(preferred),
                                             m.label))
if ordered:
    chosen = st.multiselect("TFLite variants (LiteRT)", [m.label for m in ordered], default=[m.label for m in ordered])
    predicting = [m for m in ordered if m.label in chosen]
else:  # not deployed: the Keras models predict (TensorFlow loads on first use)
    st.caption("No TFLite variants of this dataset (deploy a run to get them): the Keras models predict.")
    chosen = st.multiselect("Keras models", [m.label for m in keras_models], default=[m.label for m in keras_models])
    predicting = [m for m in keras_models if m.label in chosen]
ensemble_folder = None
if stored_ensembles:
    names = {f"{r.name} · {r.weights_method} of {len(r.members)}": f for f, r in stored_ensembles}
    picked_ensemble = st.selectbox("Ensembles (members' TFLite variants, combined as stored)",
                                   ["none"] + list(names), index=1)
    ensemble_folder = names.get(picked_ensemble)
    ensemble_variant = st.radio("Members' variant", ensemble_predict.VARIANTS, horizontal=True,
                                format_func=ensemble_predict.COST_VARIANTS.get)
classes = sorted({c for m in predicting for c in m.classes})
st.info(f"A model only knows the classes it was trained on ({len(classes)} here: "
        f"{', '.join(classes[:12])}{', …' if len(classes) > 12 else ''}). It gives every image one of them, "
        "confidently or not: an image of anything else still gets a class and a probability.")


def run_model(m, image):
    """Probabilities and latency (ms) of one model on one image: LiteRT, or Keras for a model not deployed."""
    if m.variant == "keras":
        with st.spinner("Loading TensorFlow and the Keras model…"):
            return gradcam.predict(m.path, predict.model_input(image, m))
    return predict.predict_lite(m, image)


def show_ensemble(where, image):
    """The chosen ensemble on one image: its top classes, each member's prediction, the summed latency."""
    try:
        result = ensemble_predict.predict_ensemble(ensemble_folder, image, ensemble_variant, lite_models)
    except UserError as exc:  # the ensemble's record changed or broke since the page listed it
        where.error(str(exc))
        return
    record = result.record
    where.markdown(f"**Ensemble {record.name}** ({record.weights_method}: {record.weight_rule})")
    for line in result.missing:
        where.warning(line)
    if result.probs is None:
        where.info(f"No ensemble result: {len(result.missing)} of {len(record.members)} members did not predict, "
                   "and fewer members are not the stored ensemble.")
    else:
        where.markdown(f"**{result.predicted}** · members' latencies summed: {result.total_ms:.2f} ms")
        where.dataframe(pd.DataFrame(result.top(3)), hide_index=True, width="stretch")
    if result.members:
        where.dataframe(pd.DataFrame(result.member_rows()), hide_index=True, width="stretch")


for position, (name, image) in enumerate(images):
    st.divider()
    left, right = st.columns([1, 2])
    left.image(image, caption=name, width="stretch")
    rows, probabilities = [], []
    for m in predicting:
        try:
            probs, ms = run_model(m, image)
        except Exception as exc:  # noqa: BLE001 - one broken model file must not take the page down
            right.warning(f"{m.label} could not run: {exc}")
            continue
        top = int(probs.argmax())
        rows.append({"model": m.label, "prediction": m.classes[top], "probability": float(probs[top]),
                     "latency ms": round(ms, 2)})
        probabilities += [{"model": m.label, "class": c, "p": float(p)} for c, p in zip(m.classes, probs)]
    if rows:
        table = pd.DataFrame(rows)
        votes = Counter(table["prediction"])
        winner, count = votes.most_common(1)[0]
        right.markdown(f"**{winner}** by {count} of {len(table)} models"
                       + ("" if count == len(table) else f" (others: {', '.join(k for k in votes if k != winner)})"))
        right.altair_chart(alt.Chart(pd.DataFrame(probabilities)).mark_bar().encode(
            x=alt.X("p:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("model:N", title=None, axis=alt.Axis(labelLimit=360, labelOverlap=False)),
            color="class:N", tooltip=["model", "class", "p"]).properties(height=24 * len(table) + 40), width="stretch")
        right.dataframe(table, hide_index=True, width="stretch")
    if ensemble_folder is not None:
        show_ensemble(right, image)

    if keras_models:
        with st.expander(f"Grad-CAM for {name}", expanded=len(images) == 1):
            km = next(m for m in keras_models if m.label == st.selectbox(
                "Keras model", [m.label for m in keras_models], key=f"cam-model-{position}"))
            klass = st.selectbox("Explain class", ["predicted"] + list(km.classes), key=f"cam-class-{position}")
            try:
                with st.spinner("Loading TensorFlow and computing Grad-CAM…"):
                    index = None if klass == "predicted" else list(km.classes).index(klass)
                    cam, index, layer, probs = gradcam.gradcam(km.path, predict.model_input(image, km), index)
            except UserError as exc:  # a model file that is refused, damaged or gone: the predictions above stand
                st.error(f"No Grad-CAM from {km.run_label}: {exc}")
            except Exception as exc:  # noqa: BLE001 - e.g. a replaced model.keras that no longer fits its run
                st.error(f"No Grad-CAM from {km.run_label}: {type(exc).__name__}: "
                         + " ".join(str(exc).split())[:300])
            else:
                st.image(gradcam.overlay(image, cam), width=420)
                st.caption(f"Grad-CAM of '{km.classes[index]}' (p = {probs[index]:.3f}) by {km.run_label}: gradients "
                           f"at layer '{layer}', the last feature map before pooling ({cam.shape[0]}×{cam.shape[1]}). "
                           "Red: most evidence for the class.")
