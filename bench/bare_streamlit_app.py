"""The baseline for ``bench_pages.py``: a bare Streamlit page (a title and a line of text, nothing imported).

Its load time is what Streamlit and the browser cost on this machine before any page of ours does anything."""
import streamlit as st

st.set_page_config(page_title="bare", layout="wide")
st.title("A bare Streamlit page")
st.write("nothing else")
