"""The serving stub: a REST API and a one-page web UI over one published variant folder.

Imports onnxruntime, tokenizers, numpy, FastAPI/uvicorn and the torch-free `structbert_lite.artifact`, `.api`,
`structbert_lite.runtime`, `structbert_lite.errors` only - never torch, transformers or `convert/`
(tests/serve/test_imports.py checks it). Entry points: `server.add_serve_arguments`, `server.serve_from_args`,
`app.create_app`.
"""
