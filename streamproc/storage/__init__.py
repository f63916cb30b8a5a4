"""Object storage for the MP4s."""
