"""The web app (``stylesense ui``): Streamlit pages thin over the library."""
