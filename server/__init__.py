"""The composition root: the `teresa` entry point, `teresa serve`, the command registry, the control socket, docs."""
