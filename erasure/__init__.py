"""The pack's algorithms in plain torch/numpy: importable and testable without ComfyUI.

One module per idea; pure functions on tensors whose docstrings state the equation they implement.
"""
