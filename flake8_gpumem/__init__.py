"""flake8-gpumem: will this PyTorch model fit on my GPU for training? Static shapes and training memory."""

__version__ = "0.1.0"
