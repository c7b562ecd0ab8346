"""Pure plotting functions: arrays in, plotly Figure out (no Streamlit)."""
