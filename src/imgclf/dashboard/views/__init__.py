"""The dashboard's pages: each file is a script that Streamlit's navigation runs (not imported as a module)."""
