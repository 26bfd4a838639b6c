"""Entry point of the report app: routing only; each page draws itself."""

import streamlit as st

st.set_page_config(page_title="Transfer-learning study", layout="wide")

pages = [
    st.Page("pages/overview.py", title="Overview", default=True),
]
st.navigation(pages).run()
