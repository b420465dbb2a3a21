"""Home: what is stored."""
from __future__ import annotations

import streamlit as st

from pages.common import database, dataset_table

st.title("DFF Studio")
st.caption("Which frozen vision-language model, which layers and which way of plugging them in make the best "
           "features for micro-video recommendation?")

table = dataset_table(database())
st.subheader("Datasets")
if table.empty:
    st.info("No datasets yet — build the demo with `python -m dff_core demo`, or import one with "
            "`python -m dff_core import-dataset NAME --microlens DIR`.")
else:
    st.dataframe(table, hide_index=True, width="stretch")
