"""OV-SAM served by NVIDIA Triton Inference Server.

- `names`: the Triton model and tensor names the repository, the server models and the client share.
- `repository`: writes a model repository (config.pbtxt per model; Python-backend or ONNX variant).
- `python_model`: the Python-backend model (copied into the repository as model.py), running the
  project's own torch modules.
- `local_server`: starts the Triton server bundled in the `nvidia-pytriton` wheel (tests, benchmark).

The client is `ovsam_model.backends.triton_backend.TritonBackend`.
"""
