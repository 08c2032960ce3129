"""The script every visit runs: the page registry hands the chosen page to ``st.navigation``.

``dashboard/Home.py`` (what ``streamlit run`` starts) serves this script and warms the models up
when the server starts.
"""

from dashboard import navigation

navigation.run()
