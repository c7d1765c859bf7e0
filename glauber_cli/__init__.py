"""The `glauber` command line (outside `modeling_glauber/`, which ships inside checkpoints)."""
