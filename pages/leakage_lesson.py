"""The leakage lesson: the original study's mistake (augmenting before splitting) reproduced, and its fix."""

import altair as alt
import streamlit as st

from core.artifacts import lesson
from pages.common import load_lesson, results_token

st.title("The leakage lesson")
st.markdown(
    "The original study reached 99% validation accuracy on an Alzheimer MRI set whose images had been "
    "**augmented before splitting**: rotated, shifted and flipped copies of one scan sat on both sides of the "
    "split. Here the same mistake is made on purpose, next to the fix: one network (EfficientNet-Lite0, the "
    "same settings) trained on the same augmented images, only the split differs, and every arm is also "
    "scored on the dataset's own test split, which no augmentation touched.")

record = load_lesson(results_token())
if record is None:
    st.info("No lesson recorded yet. Build the augmented set outside the repository, train the arms and "
            f"record them:\n\n```\n{lesson.COMMANDS}\n```")
    st.stop()

build = record.build or {}
if build:
    aug = {k: v for k, v in build.get("augmentation", {}).items() if k != "keras"}
    st.caption(f"Augmented set: {sum(build.get('source_images', {}).values())} source training images, each saved "
               f"once as it is and {build.get('copies_per_image')} times augmented with "
               f"`ImageDataGenerator({', '.join(f'{k}={v}' for k, v in aug.items())})`; "
               f"{build.get('images', {}).get('test')} untouched test images.")

metric = st.radio("Score", ["accuracy", "balanced_accuracy"], horizontal=True,
                  format_func=lambda m: m.replace("_", " "),
                  help="Balanced accuracy: the mean recall over classes (the test split is half NonDemented)")
rows = lesson.score_rows(record, metric)
base = alt.Chart(rows).encode(
    y=alt.Y("arm:N", title=None, sort=[a["name"] for a in record.arms], axis=alt.Axis(labelLimit=260)),
    yOffset=alt.YOffset("scored on:N", sort=["validation", "test"]),
    color=alt.Color("scored on:N", sort=["validation", "test"], legend=alt.Legend(orient="bottom")))
bars = base.mark_rule(strokeWidth=2).encode(
    x=alt.X("low:Q", title=f"{metric.replace('_', ' ')} (95% CI)", scale=alt.Scale(zero=False)), x2="high:Q")
dots = base.mark_point(filled=True, size=110).encode(
    x="score:Q", tooltip=["arm", "scored on", alt.Tooltip("score:Q", format=".3f"),
                             alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f"), "n"])
st.altair_chart((bars + dots).properties(height=70 * len(record.arms) + 40), width="stretch")

st.markdown(lesson.explanation(record))
st.dataframe(lesson.table(record), hide_index=True, width="stretch")
units = "; ".join(f"{a['name']}: validation {a['validation']['resampled']}, test {a['test']['resampled']}"
                  for a in record.arms)
st.caption(f"One seed per arm. Intervals: 95% bootstrap; validation resamples source scans (all copies of one scan "
           f"together), test resamples the audit's near-duplicate groups, the same for every arm ({units}). The "
           f"audit's count comes from those groups ({record.dataset.get('audit_groups', 'the audit')}); the true "
           f"count from the copies' file names ({record.dataset.get('source_pattern')}). Runs: "
           + ", ".join(f"`{a['run']}`" for a in record.arms) + ".")
