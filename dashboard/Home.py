"""digit-lens: ``streamlit run dashboard/Home.py`` starts here; the pages are in ``views/``."""

from dashboard import navigation

navigation.run()
