"""The Streamlit leaderboard (read-only over the results store)."""
