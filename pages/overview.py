"""Overview: what was compared and which model wins (empty state until runs exist)."""

import streamlit as st

from core.results import artifacts_dir, complete_runs

st.title("Transfer learning for image classification: which backbone, in which form?")
st.write(
    "ImageNet-pretrained backbones are fine-tuned on your image datasets and compared on "
    "accuracy, calibration, confidence intervals and deployment cost (model size, TFLite "
    "variants, latency)."
)

runs = complete_runs()
if not runs:
    st.info(
        f"No results yet: `{artifacts_dir()}` holds no complete run. Produce some with the CLI, e.g.\n\n"
        "```\npython -m core backbones              # which backbones have ImageNet weights here\n"
        "python -m core audit DATA_DIR          # duplicates and leakage across splits\n```\n\n"
        "then reload this page."
    )
else:
    st.write(f"{len(runs)} complete runs in `{artifacts_dir()}`.")
