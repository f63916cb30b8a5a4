"""The resident text-to-video pipeline and MP4 encoding."""
