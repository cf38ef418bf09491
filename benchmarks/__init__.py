"""Benchmarks of the pack: the toy video world (``toy_world``) and the scripts beside it."""
