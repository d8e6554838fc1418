"""The model repository on disk: numbered version folders and their model files."""
