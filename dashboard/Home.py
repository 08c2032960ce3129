"""digit-lens: ``streamlit run dashboard/Home.py`` starts here.

The server runs ``dashboard/app.py`` for every visit (the pages are in ``views/``) and, as soon as
it starts, loads PyTorch and the models in the background (``dashboard/warmup.py``).
"""

import streamlit as st

from dashboard.warmup import lifespan

app = st.App("app.py", lifespan=lifespan)
